"""The built-in page in a real browser: at-risk list, customer page, live feed, policy, docs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.support.events import make_event
from tests.support.http import now, rfc
from tests.ui.conftest import (
    EXPECTED_AT_RISK,
    SEGMENTS,
    Server,
    at_risk_ids,
    quote,
    rows,
    screenshot,
    wait_for,
)

pytestmark = pytest.mark.slow


def console_errors(driver: Chrome) -> list[dict[str, Any]]:
    """Errors the page logged since the last call (uncaught exceptions, failed requests)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in entries if entry["level"] == "SEVERE"]


def offsite_requests(driver: Chrome, server: Server) -> list[str]:
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [name for name in names if not name.startswith(server.url + "/")]


def api_at_risk(server: Server, **params: str) -> list[str]:
    with server.client() as http:
        body = http.get("/v1/at-risk", params={"limit": 1000, **params}).json()
    return [item["customer_id"] for item in body["items"]]


def open_customer_page(driver: Chrome, server: Server, customer_id: str) -> None:
    driver.get(f"{server.url}/ui/#/customers/{quote(customer_id)}")
    wait_for(
        lambda: driver.find_element(By.ID, "balance-chart").get_attribute("data-points"),
        what="the balance chart",
    )


def test_root_redirects_and_the_at_risk_list_shows_the_seeded_customers(
    server: Server, browser: Chrome, screenshots: Path
) -> None:
    browser.get(server.url + "/")
    assert browser.current_url == server.url + "/ui/"
    expected = api_at_risk(server)
    assert set(expected) >= EXPECTED_AT_RISK, expected
    shown = wait_for(lambda: at_risk_ids(browser), what="the at-risk rows")
    # Lowest balance first, as the API ranks them.
    assert shown == expected
    table = browser.find_element(By.ID, "at-risk-table")
    assert table.find_element(By.TAG_NAME, "caption").get_attribute("textContent")
    assert len(table.find_elements(By.CSS_SELECTOR, "thead th[scope=col]")) == 7
    badges = table.find_elements(By.CSS_SELECTOR, "tbody .badge-risk")
    assert [b.text for b in badges] == ["At risk"] * len(expected)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#feed-list .feed-item"), what="feed")
    screenshot(browser, screenshots, "01-at-risk")
    assert console_errors(browser) == []
    assert offsite_requests(browser, server) == []
    # A narrow window stacks the feed under the list; the page itself never scrolls sideways.
    browser.set_window_size(760, 1000)
    wait_for(
        lambda: browser.execute_script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ),
        what="no horizontal overflow",
    )
    screenshot(browser, screenshots, "01-at-risk-narrow")


def test_segment_filter_narrows_the_list(server: Server, browser: Chrome) -> None:
    browser.get(server.url + "/ui/")
    wait_for(lambda: at_risk_ids(browser), what="the at-risk rows")
    select = Select(browser.find_element(By.ID, "segment-filter"))
    options = [o.get_attribute("value") for o in select.options]
    assert set(SEGMENTS.values()) <= set(options), options
    select.select_by_value("strategic")
    expected = api_at_risk(server, segment="strategic")
    assert expected == ["initech 100%"]
    wait_for(lambda: at_risk_ids(browser) == expected, what="the strategic rows")
    assert browser.current_url.endswith("#/?segment=strategic")
    assert console_errors(browser) == []


def test_customer_page_charts_history_with_thresholds_drivers_and_ledger(
    server: Server, browser: Chrome, screenshots: Path
) -> None:
    customer = "acme/eu é"
    with server.client() as http:
        account = http.get(f"/v1/customers/{quote(customer)}").json()
        drivers = http.get(f"/v1/customers/{quote(customer)}/drivers").json()
    open_customer_page(browser, server, customer)
    assert browser.find_element(By.TAG_NAME, "h1").text == customer
    chart = browser.find_element(By.ID, "balance-chart")
    assert chart.get_attribute("data-points") == "200"
    series = (chart.get_attribute("data-series") or "").split("|")
    assert len(series) == 3
    assert series[0] == "Balance"
    assert series[1].startswith("At risk below")
    assert series[2].startswith("Recovers at")
    thresholds = account["thresholds"]
    assert float(chart.get_attribute("data-at-risk-below") or "nan") == thresholds["at_risk_below"]
    assert (
        float(chart.get_attribute("data-recover-at-or-above") or "nan")
        == thresholds["recover_at_or_above"]
    )
    # uPlot drew into a canvas that has a size.
    canvas = chart.find_element(By.TAG_NAME, "canvas")
    assert canvas.size["width"] > 300
    assert canvas.size["height"] > 100
    caption = browser.find_element(By.CSS_SELECTOR, ".chart-figure figcaption").text
    assert "at-risk level" in caption

    wait_for(lambda: browser.find_elements(By.ID, "drivers"), what="the drivers")
    pillars, types = browser.find_elements(By.CSS_SELECTOR, "#drivers table")
    pillar_rows = pillars.find_elements(By.CSS_SELECTOR, "tbody tr")
    type_rows = types.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(pillar_rows) == len(drivers["by_pillar"]) > 1
    assert len(type_rows) == len(drivers["by_type"]) > 1
    assert "billing.error" in types.text
    ledger = wait_for(lambda: rows(browser, "ledger-table"), what="the ledger rows")
    assert len(ledger) == min(account["entries"], 25)
    first = ledger[0].text
    assert "billing.error" in first  # newest first
    screenshot(browser, screenshots, "02-customer")
    assert console_errors(browser) == []
    assert offsite_requests(browser, server) == []


def test_chart_range_and_ledger_paging(server: Server, browser: Chrome) -> None:
    customer = "acme/eu é"
    with server.client() as http:
        entries = http.get(f"/v1/customers/{quote(customer)}").json()["entries"]
        for n in range(30 - entries):
            event = make_event(id=f"extra-{n}", subject=customer, type="contact.generic")
            assert http.post("/v1/events", json=event).status_code == 200
    open_customer_page(browser, server, customer)
    wait_for(lambda: len(rows(browser, "ledger-table")) == 25, what="a first ledger page")
    browser.find_element(By.ID, "ledger-more").click()
    wait_for(lambda: len(rows(browser, "ledger-table")) == 30, what="the second ledger page")
    Select(browser.find_element(By.ID, "chart-range")).select_by_value("30")
    chart = browser.find_element(By.ID, "balance-chart")

    def thirty_days() -> bool:
        first = browser.execute_script(
            "return Number(document.querySelector('#balance-chart').dataset.from)"
        )
        return bool(first) and abs(now().timestamp() - 30 * 86400 - first) < 3600

    wait_for(thirty_days, what="the chart to show 30 days")
    assert chart.get_attribute("data-points") == "200"
    assert console_errors(browser) == []


def test_a_new_alert_appears_in_the_live_feed(
    server: Server, browser: Chrome, screenshots: Path
) -> None:
    browser.get(server.url + "/ui/")
    wait_for(
        lambda: browser.find_element(By.ID, "feed-state").text == "Live", what="the feed to start"
    )
    newcomer = "wayne enterprises/gotham"
    assert not browser.find_elements(By.CSS_SELECTOR, "#feed-list .feed-item a[href*=wayne]")
    with server.client() as http:
        batch = [
            make_event(id="w1", subject=newcomer, type="cancellation.requested", source="crm"),
            make_event(id="w2", subject=newcomer, type="sla.breached", source="zendesk"),
        ]
        response = http.post("/v1/events", json=batch)
        assert response.status_code == 200, response.text

    def arrived() -> WebElement | None:
        for item in browser.find_elements(By.CSS_SELECTOR, "#feed-list .feed-item"):
            if item.get_attribute("data-customer-id") == newcomer:
                return item
        return None

    item = wait_for(arrived, what="the new alert in the feed")
    assert "At risk" in item.text
    link = item.find_element(By.TAG_NAME, "a")
    assert link.get_attribute("href") == f"{server.url}/ui/#/customers/{quote(newcomer)}"
    # Newest first.
    first = browser.find_element(By.CSS_SELECTOR, "#feed-list .feed-item")
    assert first.get_attribute("data-customer-id") == newcomer
    screenshot(browser, screenshots, "03-live-feed")
    assert console_errors(browser) == []


def test_keyboard_tab_to_a_customer_and_enter_opens_it(server: Server, browser: Chrome) -> None:
    browser.get(server.url + "/ui/")
    wait_for(lambda: at_risk_ids(browser), what="the at-risk rows")
    body = browser.find_element(By.TAG_NAME, "body")
    body.click()
    target = None
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        active = browser.switch_to.active_element
        if "customer-link" in (active.get_attribute("class") or "") and active.find_elements(
            By.XPATH, "ancestor::table[@id='at-risk-table']"
        ):
            target = active
            break
    assert target is not None, "Tab never reached a customer link in the at-risk table"
    # Focus is visible: the focused link has an outline.
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    customer = target.text
    target.send_keys(Keys.ENTER)
    wait_for(
        lambda: browser.find_element(By.TAG_NAME, "h1").text == customer,
        what="the customer page",
    )
    assert browser.current_url.endswith(f"#/customers/{quote(customer)}")
    # Focus moved to the new page's heading.
    assert browser.switch_to.active_element.tag_name == "h1"
    assert console_errors(browser) == []


def test_policy_page_and_what_if(server: Server, browser: Chrome, screenshots: Path) -> None:
    with server.client() as http:
        policy = http.get("/v1/policy").json()
    browser.get(server.url + "/ui/#/policy")
    wait_for(
        lambda: len(rows(browser, "moments-table")) == len(policy["moments"]), what="the moments"
    )
    assert policy["version"] in browser.find_element(By.ID, "policy-overview").text
    assert console_errors(browser) == []
    screenshot(browser, screenshots, "04-policy")

    candidate = browser.find_element(By.ID, "candidate")
    yaml_text = "version: what-if-strict\nhalf_life_days: 30\n" + "\n".join(
        line for line in _policy_yaml_tail(policy)
    )
    browser.execute_script("arguments[0].value = arguments[1]", candidate, yaml_text)
    candidate.send_keys(" ")  # fire `input`: the format follows the text
    assert Select(browser.find_element(By.ID, "candidate-format")).first_selected_option.text == (
        "YAML"
    )
    with server.client() as http:
        expected = http.post(
            "/v1/policy/simulate",
            content=(yaml_text + " ").encode(),
            headers={"content-type": "application/yaml"},
        )
    browser.find_element(By.CSS_SELECTOR, "#what-if-form button[type=submit]").click()
    result = browser.find_element(By.ID, "what-if-result")
    assert expected.status_code == 200, expected.text
    body = expected.json()
    wait_for(lambda: result.find_elements(By.CSS_SELECTOR, ".simulation"), what="the result")
    assert body["policy_version"] in result.text
    assert body["movers"], "a half-life of 30 days instead of 90 moves every balance"
    assert len(rows(browser, "movers-table")) == len(body["movers"])

    # A broken candidate is shown as problem details, not as a blank or a raw error.
    browser.execute_script("arguments[0].value = arguments[1]", candidate, "version: [broken")
    candidate.send_keys(" ")
    browser.find_element(By.CSS_SELECTOR, "#what-if-form button[type=submit]").click()
    problem = wait_for(
        lambda: result.find_elements(By.CSS_SELECTOR, ".problem[role=alert]"), what="the problem"
    )[0]
    assert "(422)" in problem.text
    browser.execute_script("arguments[0].value = arguments[1]", candidate, yaml_text)
    candidate.send_keys(" ")
    browser.find_element(By.CSS_SELECTOR, "#what-if-form button[type=submit]").click()
    wait_for(lambda: result.find_elements(By.CSS_SELECTOR, ".simulation"), what="the result again")
    wait_for(lambda: browser.find_element(By.ID, "what-if-result").text, what="result text")
    screenshot(browser, screenshots, "05-what-if")


def _policy_yaml_tail(policy: dict[str, Any]) -> list[str]:
    """The rest of `policy` in YAML (flow mappings are YAML too)."""
    import json

    lines = [f"opening_balance: {policy['opening_balance']}"]
    lines.append(f"thresholds: {json.dumps(policy['thresholds'])}")
    moments = {
        k: {f: v for f, v in m.items() if v is not None} for k, m in policy["moments"].items()
    }
    lines.append(f"moments: {json.dumps(moments)}")
    return lines


def test_api_docs_are_served_offline_with_the_bearer_scheme(
    server: Server, browser: Chrome, screenshots: Path
) -> None:
    browser.get(server.url + "/docs")
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"),
        what="Swagger UI",
    )
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "button.authorize"), what="Authorize")
    screenshot(browser, screenshots, "06-swagger-ui")
    assert offsite_requests(browser, server) == []
    assert console_errors(browser) == []

    browser.get(server.url + "/redoc")
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "[role=navigation], .menu-content"),
        what="ReDoc",
    )
    wait_for(lambda: "history" in browser.page_source, what="ReDoc to render the operations")
    screenshot(browser, screenshots, "07-redoc")
    assert offsite_requests(browser, server) == []


def test_no_numbers_render_as_nan(server: Server, browser: Chrome) -> None:
    open_customer_page(browser, server, "initech 100%")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "NaN" not in text
    assert "undefined" not in text
    with server.client() as http:
        balance = http.get(f"/v1/customers/{quote('initech 100%')}").json()["balance"]
    shown = browser.find_element(By.ID, "balance-now").text.replace("\u2212", "-")
    assert math.isclose(float(shown.replace(",", "")), balance, abs_tol=0.06)


def test_time_strings_are_rfc3339(server: Server) -> None:
    """The history endpoint the chart reads answers RFC 3339 UTC times."""
    with server.client() as http:
        body = http.get(
            f"/v1/customers/{quote('globex')}/history", params={"points": 3, "to": rfc(now())}
        ).json()
    assert [item["at"][-1] for item in body["items"]] == ["Z", "Z", "Z"]
