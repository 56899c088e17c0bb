"""Debian's real Prometheus with the project's rules, scraping a real relbank over loopback.

`relbank serve --role all` runs as a subprocess on a fresh database of the test server, migrated
with `relbank migrate`, auth disabled. Prometheus (/usr/bin/prometheus from Debian's package;
CI installs it) scrapes it and evaluates deploy/prometheus/rules.yml every second. The rules are
loaded as they are, nothing rescaled: RelbankAccountAtRisk has no `for`, and what holds it across
a restart is the state of the data, not a duration. Waiting is polling with deadlines.

Also here: deploy/METRICS.md lists exactly the relbank_* families a running relbank serves.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
import yaml

from service.embedded import free_port
from tests.support.db import admin_sql, with_database
from tests.support.events import make_event

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
METRICS_DOC = ROOT / "deploy" / "METRICS.md"
RELBANK = Path(sys.executable).with_name("relbank")
ALERT = "RelbankAccountAtRisk"

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 120.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass(kw_only=True)
class Server:
    """A child process serving HTTP on a loopback port, in its own process group."""

    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, argv: list[str], ready_path: str, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(f"{argv[0]} to answer {ready_path}", lambda: self._answers(ready_path), 90)

    def _answers(self, path: str) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}{path}", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass(kw_only=True)
class Relbank(Server):
    """`relbank serve --role all` on a fixed port, stopped and started again at will."""

    database_url: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELBANK_")}
        env.update(
            RELBANK_DATABASE_URL=self.database_url,
            RELBANK_AUTH="disabled",
            RELBANK_HOST="127.0.0.1",
            RELBANK_PORT=str(self.port),
        )
        return env

    def migrate(self) -> None:
        done = subprocess.run(
            [str(RELBANK), "migrate"], env=self.env(), capture_output=True, timeout=300
        )
        assert done.returncode == 0, done.stderr.decode()

    def start(self) -> None:
        self.launch([str(RELBANK), "serve", "--role", "all"], "/readyz", self.env())

    def post(self, *events: dict[str, Any]) -> None:
        answer = httpx.post(f"{self.url}/v1/events", json=list(events), timeout=30)
        assert answer.status_code == 200, answer.text
        outcomes = {r["outcome"] for r in answer.json()["results"]}
        assert outcomes == {"applied"}, answer.text


@dataclass(kw_only=True)
class Prometheus(Server):
    """Debian's prometheus scraping `target` every second with the project's rules."""

    directory: Path
    target: str

    def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert Path(binary).exists(), "needs Debian's prometheus: apt-get install prometheus"
        shutil.copy(RULES, self.directory / "rules.yml")
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {
                    "job_name": "relbank",
                    "static_configs": [{"targets": [self.target], "labels": {"role": "all"}}],
                }
            ],
        }
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [
            binary,
            f"--config.file={self.directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.launch(argv, "/-/ready")

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def firing(self) -> dict[str, dict[str, Any]]:
        """The firing RelbankAccountAtRisk alerts by customer id."""
        return {
            a["labels"]["customer_id"]: a
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == ALERT and a["state"] == "firing"
        }

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def last_evaluation(self) -> datetime:
        """When Prometheus last evaluated RelbankAccountAtRisk."""
        for group in self.api("rules", type="alert")["groups"]:
            for rule in group["rules"]:
                if rule["name"] == ALERT:
                    return _timestamp(rule["lastEvaluation"])
        raise AssertionError(f"{ALERT} is not loaded")


def _timestamp(text: str) -> datetime:
    # Go writes up to nine fractional digits; Python reads six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server (migrated by the test with `relbank migrate`)."""
    name = f"relbank_prom_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name).replace("+asyncpg", "")
    finally:
        asyncio.run(admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="relbank-prom-") as tmp:
        yield Path(tmp)


@pytest.fixture
def relbank(database: str, workdir: Path) -> Iterator[Relbank]:
    service = Relbank(database_url=database, log=workdir / "relbank.log")
    service.migrate()
    try:
        yield service
    finally:
        service.stop()


def event(n: int, customer: str, kind: str) -> dict[str, Any]:
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return make_event(id=f"prom-{n}", subject=customer, type=kind, source="prom-test", time=stamp)


@pytest.mark.slow
def test_account_at_risk_fires_survives_a_restart_and_resolves_on_recovery(
    relbank: Relbank, workdir: Path
) -> None:
    acme, globex = "Zoë & Co+1", "globex"
    relbank.start()
    prometheus = Prometheus(
        directory=workdir, target=f"127.0.0.1:{relbank.port}", log=workdir / "prometheus.log"
    )
    try:
        prometheus.start()
        # Two SLA breaches (-10 each) take both below the default threshold of -15.
        relbank.post(
            event(1, acme, "sla.breached"),
            event(2, acme, "sla.breached"),
            event(3, globex, "sla.breached"),
            event(4, globex, "sla.breached"),
        )
        wait_for("both accounts to fire", lambda: {acme, globex} <= prometheus.firing().keys())
        alert = prometheus.firing()[acme]
        active_at = alert["activeAt"]
        assert float(alert["value"]) == pytest.approx(-20, abs=0.01)
        assert alert["labels"]["job"] == "relbank"
        assert alert["annotations"]["runbook_url"].endswith("RUNBOOK.md#relbankaccountatrisk")
        drivers = alert["annotations"]["drivers_url"]
        assert drivers == f"/v1/customers/{quote(acme, safe='')}/drivers"
        answer = httpx.get(relbank.url + drivers, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["customer_id"] == acme

        # globex recovers (+15, +12) while relbank runs: its alert resolves.
        relbank.post(event(5, globex, "renewal.signed"), event(6, globex, "referral.made"))
        wait_for("globex to resolve", lambda: globex not in prometheus.firing())

        def still_firing() -> bool:
            now = prometheus.firing()
            assert acme in now, "RelbankAccountAtRisk resolved"
            assert now[acme]["activeAt"] == active_at, "RelbankAccountAtRisk fired anew"
            assert globex not in now, "a recovered account came back"
            return True

        def held_for(seconds: float) -> Callable[[], bool]:
            """True once the rule was evaluated `seconds` after now, the alert firing meanwhile."""
            since = datetime.now(UTC).timestamp() + seconds

            def check() -> bool:
                still_firing()
                return prometheus.last_evaluation().timestamp() >= since

            return check

        # relbank stops: its series go stale on the first failed scrape. The alert holds.
        relbank.stop()
        wait_for(
            "the at-risk series to go stale",
            lambda: still_firing() and not prometheus.query("relbank_at_risk_balance"),
        )
        wait_for("evaluations while relbank is down", held_for(5))

        # relbank is back: a new process, fresh series. The alert still has not resolved.
        relbank.start()
        wait_for(
            "the at-risk series to come back",
            lambda: still_firing() and prometheus.query("relbank_at_risk_balance"),
        )
        wait_for("evaluations after the restart", held_for(5))

        # acme recovers: the alert resolves.
        relbank.post(event(7, acme, "renewal.signed"), event(8, acme, "referral.made"))
        wait_for("acme to resolve", lambda: acme not in prometheus.firing())
    finally:
        prometheus.stop()


def _documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(relbank_[a-z_]+)`", METRICS_DOC.read_text(), re.MULTILINE))


@pytest.mark.slow
def test_the_metrics_reference_lists_exactly_what_relbank_serves(relbank: Relbank) -> None:
    relbank.start()
    text = httpx.get(f"{relbank.url}/metrics", timeout=10).text
    documented = _documented_metrics()
    served = {
        name
        for name in re.findall(r"^# TYPE (relbank_[a-z_]+) ", text, re.MULTILINE)
        # prometheus-client's creation-time companions of counters and histograms.
        if not (name.endswith("_created") and {name[:-8], f"{name[:-8]}_total"} & documented)
    }
    assert "relbank_at_risk_balance" in served
    assert served - documented == set(), "served but not in deploy/METRICS.md"
    assert documented - served == set(), "in deploy/METRICS.md but not served"
