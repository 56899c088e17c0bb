"""Browser tests: a real `relbank serve` on a free port, seeded over HTTP, driven by headless
Chromium from Debian (`chromium`, `chromium-driver`) through Selenium. Nothing is downloaded:
the driver is named explicitly, so Selenium Manager never runs.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.db import empty_tables
from tests.support.http import event_at, now
from tests.support.server import RELBANK, START_TIMEOUT, free_port, server_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 30.0  # generous: two busy cores
T = TypeVar("T")

# (days ago, moment type, data) per customer. Ids with '/', '%', spaces and non-ASCII on purpose.
STORIES: dict[str, list[tuple[float, str, dict[str, Any] | None]]] = {
    "acme/eu é": [
        (260, "onboarding.completed", None),
        (230, "implementation.milestone_met", None),
        (200, "implementation.milestone_missed", None),
        (170, "sla.breached", None),
        (150, "support.escalated", None),
        (120, "promise.broken", None),
        (90, "outage.affected", None),
        (60, "complaint.raised", None),
        (40, "sla.breached", None),
        (21, "survey.nps", {"score": 3}),
        (9, "support.reopened", None),
        (3, "billing.error", None),
    ],
    "globex": [
        (180, "onboarding.stalled", None),
        (150, "knowledge.lacking", None),
        (100, "support.resolved_first_contact", None),
        (45, "plan.downgraded", None),
        (30, "support.long_wait", None),
        (12, "review.public_negative", None),
        (2, "sla.breached", None),
    ],
    "initech 100%": [
        (120, "onboarding.completed", None),
        (80, "promise.broken", None),
        (50, "support.escalated", None),
        (20, "complaint.raised", None),
        (5, "outage.affected", None),
    ],
    "umbrella": [
        (200, "onboarding.completed", None),
        (90, "sla.breached", None),
        (80, "outage.affected", None),
        (70, "promise.broken", None),
        (40, "complaint.resolved", None),
        (30, "proactive.fix", None),
        (20, "renewal.signed", None),
        (10, "survey.nps", {"score": 9}),
    ],
    "hooli": [
        (150, "onboarding.completed", None),
        (100, "value.review_held", None),
        (60, "support.resolved_first_contact", None),
        (15, "referral.made", None),
    ],
    "stark-industries": [
        (300, "onboarding.completed", None),
        (240, "implementation.milestone_met", None),
        (120, "plan.upgraded", None),
        (30, "survey.csat", {"score": 5}),
    ],
}
SEGMENTS = {"initech 100%": "strategic", "stark-industries": "enterprise", "globex": "smb"}
EXPECTED_AT_RISK = {"acme/eu é", "globex", "initech 100%"}


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


def wait_for(condition: Callable[[], T | None], *, timeout: float = WAIT, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (WebDriverException, httpx.TransportError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}: {last_error}")


def start_server(tmp: Path, **variables: str) -> Server:
    port = free_port()
    log = tmp / f"server-{port}.log"
    env = server_env(RELBANK_HOST="127.0.0.1", RELBANK_PORT=str(port), **variables)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [RELBANK, "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        with server.client() as http:
            return http.get("/readyz").status_code == 200

    try:
        wait_for(ready, timeout=START_TIMEOUT, what="the server to be ready")
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


def seed(server: Server) -> None:
    """Post every story chronologically, one request per event (so each event's status
    transition is its own alert), then put the accounts into their segments."""
    base = now()
    timeline = sorted(
        (days, customer, n, type_, data)
        for customer, story in STORIES.items()
        for n, (days, type_, data) in enumerate(story)
    )
    with server.client() as http:
        for days, customer, n, type_, data in reversed(timeline):
            event = event_at(
                id=f"seed-{n}-{customer}",
                subject=customer,
                type=type_,
                at=base - timedelta(days=days),
                source="crm",
                data=data,
            )
            response = http.post("/v1/events", json=event)
            assert response.status_code == 200, response.text
        for customer, segment in SEGMENTS.items():
            path = f"/v1/customers/{quote(customer)}"
            response = http.put(path, json={"segment": segment})
            assert response.status_code == 200, response.text


def quote(customer_id: str) -> str:
    """A customer id as one path segment."""
    return urllib.parse.quote(customer_id, safe="")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where screenshots go: $RELBANK_SCREENSHOTS, or a temporary folder that is kept."""
    folder = Path(os.environ.get("RELBANK_SCREENSHOTS") or tempfile.mkdtemp(prefix="relbank-ui-"))
    folder.mkdir(parents=True, exist_ok=True)
    _SHOWN.append(folder)
    return folder


_SHOWN: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for folder in _SHOWN:
        terminalreporter.write_line(f"relbank UI screenshots: {folder}")


@pytest.fixture(scope="module")
async def empty_database(engine: AsyncEngine, database_url: str) -> str:
    await empty_tables(engine)
    return database_url


@pytest.fixture(scope="module")
def server(empty_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A seeded server without authentication."""
    tmp = tmp_path_factory.mktemp("ui-server")
    running = start_server(tmp, RELBANK_DATABASE_URL=empty_database, RELBANK_AUTH="disabled")
    try:
        seed(running)
        yield running
    finally:
        stop_server(running)


def make_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        "--lang=en-US",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    return driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing = (
            "browser tests need Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI must install them, not skip the tests silently
        pytest.skip(missing)
    profile = Path(tempfile.mkdtemp(prefix="relbank-chromium-"))
    driver = make_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def at_risk_ids(driver: Chrome) -> list[str]:
    return [row.get_attribute("data-customer-id") or "" for row in rows(driver, "at-risk-table")]


def screenshot(driver: Chrome, folder: Path, name: str) -> None:
    """The whole page, not only the window."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 6000),
                "scale": 1,
            },
        },
    )
    (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def rows(driver: Chrome, table_id: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
