"""With authentication on, the page asks for an API key once and keeps it for the tab only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support.auth import KEYS, write_keys_file
from tests.support.events import make_event
from tests.ui.conftest import Server, at_risk_ids, screenshot, start_server, stop_server, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def locked_server(
    empty_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ui-auth")
    running = start_server(
        tmp,
        RELBANK_DATABASE_URL=empty_database,
        RELBANK_API_KEYS_FILE=str(write_keys_file(directory=tmp)),
    )
    try:
        with running.client(authorization=f"Bearer {KEYS['writer']}") as http:
            event = make_event(id="k1", subject="leaving soon", type="cancellation.requested")
            assert http.post("/v1/events", json=event).status_code == 200
        yield running
    finally:
        stop_server(running)


def dialog_open(browser: Chrome) -> bool:
    return bool(browser.execute_script("return document.getElementById('key-dialog').open"))


def enter_key(browser: Chrome, key: str) -> None:
    field = browser.find_element(By.ID, "key-input")
    assert browser.switch_to.active_element == field  # the prompt takes the focus
    field.send_keys(key, Keys.ENTER)


def test_the_key_prompt_appears_rejects_a_wrong_key_and_accepts_a_good_one(
    locked_server: Server, browser: Chrome, screenshots: Path
) -> None:
    browser.get(locked_server.url + "/ui/")
    wait_for(lambda: dialog_open(browser), what="the key prompt")
    label = browser.find_element(By.CSS_SELECTOR, "label[for=key-input]")
    assert label.text == "API key"
    screenshot(browser, screenshots, "08-key-prompt")

    enter_key(browser, "not-a-key")
    wait_for(
        lambda: dialog_open(browser) and browser.find_element(By.ID, "key-error").is_displayed(),
        what="the prompt to ask again",
    )
    assert "not accepted" in browser.find_element(By.ID, "key-error").text

    enter_key(browser, KEYS["reader"])
    wait_for(lambda: at_risk_ids(browser) == ["leaving soon"], what="the at-risk list")
    assert not dialog_open(browser)
    wait_for(lambda: browser.find_element(By.ID, "feed-state").text == "Live", what="the feed")
    assert browser.find_elements(By.CSS_SELECTOR, "#feed-list .feed-item[data-customer-id]")
    # Kept for this tab's session only, never in localStorage.
    stored = browser.execute_script("return sessionStorage.getItem('relbank.apiKey')")
    assert stored == KEYS["reader"]
    assert browser.execute_script("return localStorage.length") == 0

    # A reload in the same tab needs no new prompt.
    browser.refresh()
    wait_for(lambda: at_risk_ids(browser) == ["leaving soon"], what="the list after a reload")
    assert not dialog_open(browser)


def test_cancelling_the_prompt_explains_what_is_missing(
    locked_server: Server, browser: Chrome
) -> None:
    browser.get(locked_server.url + "/ui/")
    wait_for(lambda: dialog_open(browser), what="the key prompt")
    browser.find_element(By.CSS_SELECTOR, "#key-dialog button[value=cancel]").click()
    problem = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "main .problem[role=alert]"),
        what="the explanation",
    )[0]
    assert "API key" in problem.text
    assert "needs an API key" in browser.find_element(By.ID, "feed-state").text
