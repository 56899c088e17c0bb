"""Status, alerts and the at-risk list through the API (README)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.support.events import make_event
from tests.support.http import (
    DESIGN_CUSTOMER_KEYS,
    all_alerts,
    assert_problem,
    event_at,
    forged_cursor,
    get_ok,
    now,
    post_ok,
)
from tests.support.oracle import balance_at, close, parse_time


async def test_debits_below_the_threshold_alert_and_credits_recover_with_hysteresis(
    client: httpx.AsyncClient,
) -> None:
    t = now() - timedelta(minutes=5)
    posted: list[tuple[float, Any]] = []

    async def post(id: str, type: str, amount: float) -> dict[str, Any]:
        posted.append((amount, t))
        return await post_ok(client, event_at(id=id, subject="c1", at=t, type=type))

    await post("a1", "sla.breached", -10.0)
    assert (await get_ok(client, "/v1/customers/c1"))["status"] == "ok"
    assert (await get_ok(client, "/v1/alerts"))["items"] == []

    before = now()
    await post("a2", "sla.breached", -10.0)
    after = now()
    [alert] = (await get_ok(client, "/v1/alerts"))["items"]
    assert set(alert) == {
        "alert_id",
        "customer_id",
        "kind",
        "balance",
        "threshold",
        "at",
        "cause",
    }
    assert alert["customer_id"] == "c1"
    assert alert["kind"] == "at_risk"
    assert alert["threshold"] == -15
    assert alert["cause"] == {"source": "zendesk", "id": "a2"}
    assert close(alert["balance"], balance_at(posted, after))
    assert before <= parse_time(alert["at"]) <= after
    customer = await get_ok(client, "/v1/customers/c1")
    assert customer["status"] == "at_risk"
    assert before <= parse_time(customer["status_since"]) <= after

    # Between the two levels (-15 <= B < -5) the status stays: no alert either way.
    await post("a3", "support.resolved_first_contact", 6.0)  # ≈ -14
    await post("a4", "support.resolved_first_contact", 6.0)  # ≈ -8
    assert len((await get_ok(client, "/v1/alerts"))["items"]) == 1
    customer = await get_ok(client, "/v1/customers/c1")
    assert customer["status"] == "at_risk"
    assert -15 <= customer["balance"] < -5

    await post("a5", "renewal.signed", 15.0)  # ≈ +7
    alerts = (await get_ok(client, "/v1/alerts"))["items"]
    assert [a["kind"] for a in alerts] == ["at_risk", "recovered"]
    recovered = alerts[1]
    assert recovered["threshold"] == -5
    assert recovered["cause"] == {"source": "zendesk", "id": "a5"}
    assert recovered["alert_id"] > alerts[0]["alert_id"]
    assert close(recovered["balance"], balance_at(posted, now()))
    assert (await get_ok(client, "/v1/customers/c1"))["status"] == "ok"

    # Down again from ok: between the levels an ok account stays ok too.
    await post("a6", "promise.broken", -12.0)  # ≈ -5
    await post("a7", "support.escalated", -5.0)  # ≈ -10
    assert len((await get_ok(client, "/v1/alerts"))["items"]) == 2
    assert (await get_ok(client, "/v1/customers/c1"))["status"] == "ok"


async def test_a_new_account_below_the_threshold_alerts_at_once(client: httpx.AsyncClient) -> None:
    result = await post_ok(
        client, make_event(id="bye", subject="c1", type="cancellation.requested")
    )

    assert result["outcome"] == "applied"
    assert result["balance"] < -15
    [alert] = (await get_ok(client, "/v1/alerts"))["items"]
    assert alert["kind"] == "at_risk"
    assert alert["customer_id"] == "c1"
    assert alert["cause"] == {"source": "zendesk", "id": "bye"}
    assert alert["threshold"] == -15
    assert (await get_ok(client, "/v1/customers/c1"))["status"] == "at_risk"


async def test_a_batch_alerts_per_customer_with_the_cause_that_tipped_it(
    client: httpx.AsyncClient,
) -> None:
    t = now() - timedelta(minutes=1)
    await post_ok(
        client,
        [
            event_at(id="x1", subject="c1", at=t, type="sla.breached"),
            event_at(id="y1", subject="c2", at=t, type="cancellation.requested"),
            event_at(id="x2", subject="c1", at=t, type="sla.breached"),
            event_at(id="z1", subject="c3", at=t, type="promise.broken"),
        ],
    )

    alerts = (await get_ok(client, "/v1/alerts"))["items"]
    by_customer = {a["customer_id"]: a for a in alerts}
    assert set(by_customer) == {"c1", "c2"}
    assert by_customer["c1"]["cause"] == {"source": "zendesk", "id": "x2"}
    assert by_customer["c2"]["cause"] == {"source": "zendesk", "id": "y1"}
    assert {a["kind"] for a in alerts} == {"at_risk"}


async def test_the_alert_feed_pages_oldest_first_and_skips_nothing(
    client: httpx.AsyncClient,
) -> None:
    t = now() - timedelta(minutes=1)
    for i in range(7):
        customer = f"c{i}"
        await post_ok(
            client, event_at(id=f"down{i}", subject=customer, at=t, type="cancellation.requested")
        )
        await post_ok(client, event_at(id=f"up{i}", subject=customer, at=t, type="renewal.signed"))
        await post_ok(client, event_at(id=f"up2{i}", subject=customer, at=t, type="referral.made"))
    everything = await all_alerts(client)
    assert len(everything) == 14

    seen: list[dict[str, Any]] = []
    after = 0
    for _ in range(20):
        page = await get_ok(client, "/v1/alerts", params={"after": after, "limit": 3})
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        if page["next_cursor"] is None:
            break
        assert int(page["next_cursor"]) == page["items"][-1]["alert_id"]
        after = int(page["next_cursor"])
    ids = [a["alert_id"] for a in seen]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 14
    assert seen == everything
    assert [a["kind"] for a in seen] == ["at_risk", "recovered"] * 7
    assert [a["customer_id"] for a in seen[::2]] == [f"c{i}" for i in range(7)]
    times = [parse_time(a["at"]) for a in seen]
    assert times == sorted(times)

    # A poller that has seen everything gets nothing new, then exactly what comes next.
    last = ids[-1]
    assert (await get_ok(client, "/v1/alerts", params={"after": last}))["items"] == []
    await post_ok(client, make_event(id="late", subject="c-late", type="cancellation.requested"))
    [fresh] = (await get_ok(client, "/v1/alerts", params={"after": last}))["items"]
    assert fresh["alert_id"] > last
    assert fresh["customer_id"] == "c-late"


@pytest.mark.parametrize("after", ["-1", "x", "1.5", str(2**63), str(10**30)])
async def test_a_bad_after_is_a_422_problem(client: httpx.AsyncClient, after: str) -> None:
    assert_problem(await client.get("/v1/alerts", params={"after": after}), status=422)


async def test_the_at_risk_list_is_lowest_balance_first_and_pages_through_everyone(
    client: httpx.AsyncClient,
) -> None:
    base = now()
    expected: dict[str, float] = {}
    for i in range(12):
        customer = f"r{i:02d}"
        at = base - timedelta(days=(i * 7) % 12 * 2, minutes=1)
        magnitude = 1 + i * 0.1
        await post_ok(
            client,
            event_at(
                id=f"cx{i}",
                subject=customer,
                at=at,
                type="cancellation.requested",
                data={"magnitude": magnitude},
            ),
        )
        expected[customer] = balance_at([(-20 * magnitude, at)], base)
    # Accounts that are not at risk stay off the list: ok all along, and recovered.
    await post_ok(client, make_event(id="ok1", subject="fine", type="promise.broken"))
    await post_ok(client, make_event(id="ok2", subject="happy"))
    await post_ok(client, make_event(id="rc1", subject="back", type="cancellation.requested"))
    await post_ok(client, make_event(id="rc2", subject="back", type="referral.made"))
    await post_ok(client, make_event(id="rc3", subject="back", type="renewal.signed"))
    assert all(b < -15 for b in expected.values())
    ordered = sorted(expected, key=expected.__getitem__)
    gaps = [expected[b] - expected[a] for a, b in itertools.pairwise(ordered)]
    assert min(gaps) > 0.01  # distinct balances, so the order is well defined

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = await get_ok(client, "/v1/at-risk", params=params)
        assert len(page["items"]) <= 5
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [c["customer_id"] for c in seen] == ordered
    balances = [c["balance"] for c in seen]
    assert balances == sorted(balances)
    for item in seen:
        assert set(item) == DESIGN_CUSTOMER_KEYS
        assert item["status"] == "at_risk"
        assert close(item["balance"], expected[item["customer_id"]])

    # Segment filter: only the enterprise accounts, in the same order.
    enterprise = ["r03", "r07", "r10"]
    for customer in enterprise:
        response = await client.put(f"/v1/customers/{customer}", json={"segment": "enterprise"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "at_risk"
    page = await get_ok(client, "/v1/at-risk", params={"segment": "enterprise", "limit": 2})
    first = [c["customer_id"] for c in page["items"]]
    page2 = await get_ok(
        client,
        "/v1/at-risk",
        params={"segment": "enterprise", "limit": 2, "cursor": page["next_cursor"]},
    )
    assert page2["next_cursor"] is None
    listed = first + [c["customer_id"] for c in page2["items"]]
    assert listed == [c for c in ordered if c in enterprise]
    for item in page["items"] + page2["items"]:
        assert item["segment"] == "enterprise"
        assert item["thresholds"] == {"at_risk_below": -25, "recover_at_or_above": -10}
    assert (await get_ok(client, "/v1/at-risk", params={"segment": "smb"}))["items"] == []


BAD_AT_RISK_CURSORS = {
    "not base64 json": "garbage!",
    "a string": forged_cursor(key="x"),
    "two parts": forged_cursor(key=[1, 2]),
    "words": forged_cursor(key=["a", "b", "c"]),
    "an object": forged_cursor(key={"k": 1}),
    "rank sign over smallint": forged_cursor(key=[2**40, 1.0, "c"]),
    "rank sign at bigint min": forged_cursor(key=[-(2**63), 1.0, "c"]),
}


@pytest.mark.parametrize("cursor", BAD_AT_RISK_CURSORS.values(), ids=BAD_AT_RISK_CURSORS.keys())
async def test_a_bad_at_risk_cursor_is_a_422_problem(
    client: httpx.AsyncClient, cursor: str
) -> None:
    await post_ok(client, make_event(id="x", subject="c1", type="cancellation.requested"))
    assert_problem(await client.get("/v1/at-risk", params={"cursor": cursor}), status=422)
