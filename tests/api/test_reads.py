"""The read API (README): customer, point-in-time balance, ledger paging, drivers, segments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app import close_client, open_client
from tests.support.events import make_event
from tests.support.http import (
    DESIGN_CUSTOMER_KEYS,
    LEDGER_KEYS,
    assert_problem,
    event_at,
    forged_cursor,
    get_ok,
    now,
    post_ok,
    rfc,
    whole_ledger,
)
from tests.support.oracle import HALF_LIFE_DAYS, balance_at, close, parse_time
from tests.support.policy import make_policy


async def test_customer_has_every_key_of_the_contract(client: httpx.AsyncClient) -> None:
    t_first = now() - timedelta(days=10)
    t_last = now() - timedelta(days=2)
    await post_ok(client, event_at(id="e2", subject="c1", at=t_last, type="sla.breached"))
    await post_ok(client, event_at(id="e1", subject="c1", at=t_first))

    body = await get_ok(client, "/v1/customers/c1")

    assert set(body) == DESIGN_CUSTOMER_KEYS
    assert body["customer_id"] == "c1"
    assert body["segment"] is None
    assert body["status"] == "ok"
    assert body["thresholds"] == {"at_risk_below": -15, "recover_at_or_above": -5}
    assert body["entries"] == 2
    assert body["policy_version"] == "2026-11-default"
    # opened_at is the effective time of the first event to *arrive*, not the earliest.
    assert parse_time(body["opened_at"]) == t_last
    assert parse_time(body["last_event_at"]) == t_last
    assert parse_time(body["status_since"]) <= now()
    assert body["next_transition_at"] is None
    assert close(body["balance"], balance_at([(-10.0, t_last), (6.0, t_first)], now()))
    for key in ("opened_at", "last_event_at", "status_since"):
        assert body[key].endswith("Z"), (key, body[key])


async def test_next_transition_is_where_decay_crosses_the_threshold(
    client: httpx.AsyncClient,
) -> None:
    """At -20 with recovery at -5: t* = ref_time + 90 · log2(20 / 5) days = ref_time + 180 days."""
    t0 = now() - timedelta(days=1)
    await post_ok(client, event_at(id="x", subject="c1", at=t0, type="cancellation.requested"))

    body = await get_ok(client, "/v1/customers/c1")

    assert body["status"] == "at_risk"
    crossing = parse_time(body["next_transition_at"])
    assert abs(crossing - (t0 + timedelta(days=2 * HALF_LIFE_DAYS))) < timedelta(seconds=1)


async def test_unknown_customer_is_a_404_problem(client: httpx.AsyncClient) -> None:
    for path in (
        "/v1/customers/nobody",
        "/v1/customers/nobody/balance",
        "/v1/customers/nobody/ledger",
        "/v1/customers/nobody/drivers",
    ):
        body = assert_problem(await client.get(path), status=404)
        assert body["detail"] == "customer 'nobody' has never been seen", body
        assert body["instance"] == path, body


@pytest.mark.parametrize("customer", ["acme eu?x=1#2 é%20", "acme/eu", "/billing/eu/7"])
async def test_any_valid_subject_is_readable_by_its_id(
    client: httpx.AsyncClient, customer: str
) -> None:
    """A subject is any 1-128 characters without control characters (README); every such
    customer must be readable through GET /v1/customers/{id}, percent-encoded."""
    await post_ok(client, make_event(id="s1", subject=customer))
    path = f"/v1/customers/{quote(customer, safe='')}"
    for suffix in ("", "/balance", "/ledger", "/drivers"):
        response = await client.get(path + suffix)
        assert response.status_code == 200, (suffix, response.status_code, response.text)
        assert response.json().get("customer_id", customer) == customer


async def test_point_in_time_balances_match_the_formula(client: httpx.AsyncClient) -> None:
    """Backdated and out-of-order events, singles and batches: B(T) from the API equals the
    README sum computed here, for T before, between, on and after the entries."""
    base = now()
    moments: list[tuple[str, float, float]] = [
        # (type, weight, days ago)
        ("support.resolved_first_contact", 6, 200),
        ("sla.breached", -10, 150.25),
        ("renewal.signed", 15, 120),
        ("promise.broken", -12, 90),
        ("proactive.fix", 7, 45.5),
        ("outage.affected", -8, 30),
        ("referral.made", 12, 7),
        ("support.escalated", -5, 1),
        ("complaint.raised", -8, 0.01),
    ]
    posted: list[tuple[float, datetime]] = []
    events: list[dict[str, Any]] = []
    for i, (type_, weight, days) in enumerate(moments):
        at = base - timedelta(days=days)
        events.append(event_at(id=f"p{i}", subject="c1", at=at, type=type_))
        posted.append((weight, at))
    # A weighted magnitude and an offset other than Z, backdated too.
    at_mag = (base - timedelta(days=60)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    events.append(
        make_event(
            id="mag",
            subject="c1",
            type="plan.downgraded",
            time=at_mag.isoformat(),
            data={"magnitude": 1.75},
        )
    )
    posted.append((-12 * 1.75, at_mag.astimezone(UTC)))
    random.Random(7).shuffle(events)
    # Out of order: some one at a time, the rest as one batch.
    for event in events[:4]:
        await post_ok(client, event)
    await post_ok(client, events[4:])

    earliest = min(at for _, at in posted)
    times = [
        earliest - timedelta(days=1),
        earliest,
        earliest + timedelta(microseconds=1),
        base - timedelta(days=100),
        base - timedelta(days=60),
        base - timedelta(days=45.5),
        base - timedelta(days=3),
        base,
        base + timedelta(days=30),
    ]
    for t in times:
        body = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(t)})
        assert body["customer_id"] == "c1"
        assert parse_time(body["at"]) == t
        assert close(body["balance"], balance_at(posted, t)), (
            t,
            body["balance"],
            balance_at(posted, t),
        )

    # Before the first event: nothing yet.
    body = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(earliest)})
    assert body["balance"] == 6.0  # the entry at exactly T counts, undecayed
    before = earliest - timedelta(microseconds=1)
    body = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(before)})
    assert body["balance"] == 0.0

    # The same time in another offset is the same instant.
    t = base - timedelta(days=100)
    body = await get_ok(
        client,
        "/v1/customers/c1/balance",
        params={"at": t.astimezone(timezone(timedelta(hours=-3))).isoformat()},
    )
    assert close(body["balance"], balance_at(posted, t))

    # Without `at`: now, and it agrees with the projection behind GET /v1/customers/{id}.
    body = await get_ok(client, "/v1/customers/c1/balance")
    assert close(body["balance"], balance_at(posted, parse_time(body["at"])))
    customer = await get_ok(client, "/v1/customers/c1")
    assert close(customer["balance"], balance_at(posted, now()))


@pytest.mark.parametrize(
    "at", ["yesterday", "2026-01-01", "2026-01-01T00:00:00", "", "1700000000", "2026-13-01T00:00Z"]
)
async def test_a_bad_at_is_a_422_problem(client: httpx.AsyncClient, at: str) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    response = await client.get("/v1/customers/c1/balance", params={"at": at})
    assert_problem(response, status=422)


async def test_at_long_before_the_first_event_is_zero(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    for at in ("1970-01-01T00:00:00Z", "1900-01-01T03:00:00+02:00"):
        response = await client.get("/v1/customers/c1/balance", params={"at": at})
        assert response.status_code == 200, (at, response.status_code, response.text)
        assert response.json()["balance"] == 0.0


async def test_ledger_pages_visit_every_entry_once_newest_first(
    client: httpx.AsyncClient,
) -> None:
    base = now() - timedelta(days=1)
    rng = random.Random(3)
    events = [
        event_at(
            id=f"L{i:02d}",
            subject="c1",
            at=base - timedelta(hours=rng.randint(0, 500)),
            type=rng.choice(["sla.breached", "promise.kept", "nps.unknown"]),
        )
        for i in range(17)
    ]
    # Three entries at exactly the same instant: the order among them must still be total.
    tie = base - timedelta(hours=250)
    events += [event_at(id=f"T{i}", subject="c1", at=tie) for i in range(3)]
    rng.shuffle(events)
    await post_ok(client, events[:7])
    for event in events[7:]:
        await post_ok(client, event)
    await post_ok(client, make_event(id="other", subject="c2"))

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = await get_ok(client, "/v1/customers/c1/ledger", params=params)
        pages += 1
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["items"], "a page with a next cursor must not be empty"
    assert pages == 7
    assert len(seen) == 20
    assert sorted(e["id"] for e in seen) == sorted(e["id"] for e in events)
    times = [parse_time(e["effective_at"]) for e in seen]
    assert times == sorted(times, reverse=True)
    for entry in seen:
        assert set(entry) == LEDGER_KEYS
        assert entry["source"] == "zendesk"
        assert entry["policy_version"] == "2026-11-default"
        assert parse_time(entry["recorded_at"]) >= parse_time(entry["effective_at"])
        assert entry["outcome"] in ("applied", "unweighted")
    by_id = {e["id"]: e for e in seen}
    assert by_id["T0"]["amount"] == 6.0
    assert by_id["T0"]["pillar"] == "resolution"

    # The last full page: when the entries run out exactly at a page end, the cursor is null
    # or leads to an empty last page; either way nothing is repeated.
    whole = await whole_ledger(client, "c1", limit=4)
    assert [e["id"] for e in whole] == [e["id"] for e in seen]
    assert len(await whole_ledger(client, "c1", limit=20)) == 20


BAD_LEDGER_CURSORS = {
    "not base64 json": "not-a-cursor",
    "punctuation": "!!!",
    "a number": forged_cursor(key=5),
    "a string": forged_cursor(key="text"),
    "an object": forged_cursor(key={"a": 1}),
    "empty list": forged_cursor(key=[]),
    "time only": forged_cursor(key=["2026-01-01T00:00:00+00:00"]),
    "bad time": forged_cursor(key=["yesterday", 5]),
    "bad entry id": forged_cursor(key=["2026-01-01T00:00:00+00:00", "x"]),
    "null time": forged_cursor(key=[None, 5]),
    "entry id over bigint": forged_cursor(key=["2026-01-01T00:00:00+00:00", 2**63]),
}


@pytest.mark.parametrize("cursor", BAD_LEDGER_CURSORS.values(), ids=BAD_LEDGER_CURSORS.keys())
async def test_a_bad_ledger_cursor_is_a_422_problem(client: httpx.AsyncClient, cursor: str) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    response = await client.get("/v1/customers/c1/ledger", params={"cursor": cursor})
    assert_problem(response, status=422)


@pytest.mark.parametrize("limit", [0, -1, 1001, "x"])
async def test_list_limit_outside_1_to_1000_is_422(
    client: httpx.AsyncClient, limit: int | str
) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    for path in ("/v1/customers/c1/ledger", "/v1/at-risk", "/v1/alerts"):
        assert_problem(await client.get(path, params={"limit": limit}), status=422)


async def test_drivers_total_per_pillar_and_type(client: httpx.AsyncClient) -> None:
    base = now()
    recent: list[tuple[str, str, float, dict[str, Any] | None]] = [
        ("r1", "support.resolved_first_contact", 6.0, None),
        ("r2", "sla.breached", -10.0, None),
        ("r3", "support.escalated", -5.0, None),
        ("r4", "crm.note.added", 0.0, None),
        ("r5", "survey.nps", 10.0, {"score": 9}),
        ("r6", "proactive.fix", 7.0, None),
        ("r7", "support.resolved_first_contact", 9.0, {"magnitude": 1.5}),
        ("r8", "survey.nps", -12.0, {"score": 2}),
    ]
    for i, (id_, type_, _, data) in enumerate(recent):
        at = base - timedelta(days=1, hours=i)
        await post_ok(client, event_at(id=id_, subject="c1", at=at, type=type_, data=data))
    old = base - timedelta(days=30)
    await post_ok(client, event_at(id="old", subject="c1", at=old, type="promise.broken"))

    since = base - timedelta(days=10)
    body = await get_ok(client, "/v1/customers/c1/drivers", params={"since": rfc(since)})

    assert body["customer_id"] == "c1"
    assert parse_time(body["since"]) == since
    assert body["credits"] == pytest.approx(6 + 10 + 7 + 9)
    assert body["debits"] == pytest.approx(-10 - 5 - 12)
    assert body["net"] == pytest.approx(body["credits"] + body["debits"])
    assert body["entries"] == len(recent)

    pillars = {p["pillar"]: p for p in body["by_pillar"]}
    assert set(pillars) == {"resolution", "time_and_effort", "empathy", None}
    assert pillars["resolution"]["credits"] == pytest.approx(15.0)
    assert pillars["resolution"]["debits"] == pytest.approx(-5.0)
    assert pillars["resolution"]["entries"] == 3
    assert pillars["time_and_effort"]["credits"] == pytest.approx(7.0)
    assert pillars["time_and_effort"]["debits"] == pytest.approx(-10.0)
    assert pillars["empathy"]["credits"] == pytest.approx(10.0)
    assert pillars["empathy"]["debits"] == pytest.approx(-12.0)
    assert pillars[None]["entries"] == 1
    assert pillars[None]["net"] == 0

    types = {t["type"]: t for t in body["by_type"]}
    assert set(types) == {t for _, t, _, _ in recent}
    assert types["support.resolved_first_contact"]["credits"] == pytest.approx(15.0)
    assert types["support.resolved_first_contact"]["entries"] == 2
    assert types["survey.nps"]["credits"] == pytest.approx(10.0)
    assert types["survey.nps"]["debits"] == pytest.approx(-12.0)
    assert types["sla.breached"]["pillar"] == "time_and_effort"
    assert "promise.broken" not in types

    for group in (body["by_pillar"], body["by_type"]):
        assert sum(g["credits"] for g in group) == pytest.approx(body["credits"])
        assert sum(g["debits"] for g in group) == pytest.approx(body["debits"])
        assert sum(g["entries"] for g in group) == body["entries"]
        for g in group:
            assert g["credits"] >= 0 >= g["debits"]
            assert g["net"] == pytest.approx(g["credits"] + g["debits"])

    # Without `since`: everything since the account opened, the old debit included.
    everything = await get_ok(client, "/v1/customers/c1/drivers")
    assert everything["entries"] == len(recent) + 1
    assert everything["debits"] == pytest.approx(body["debits"] - 12)
    assert everything["credits"] == pytest.approx(body["credits"])

    assert_problem(
        await client.get("/v1/customers/c1/drivers", params={"since": "last week"}), status=422
    )


async def test_segment_change_sets_thresholds_and_multiplies_later_events(
    client: httpx.AsyncClient,
) -> None:
    t1 = now() - timedelta(days=5)
    await post_ok(client, event_at(id="before", subject="c1", at=t1))

    response = await client.put("/v1/customers/c1", json={"segment": "enterprise"})
    assert response.status_code == 200, response.text
    assert response.json()["segment"] == "enterprise"
    assert set(response.json()) == DESIGN_CUSTOMER_KEYS

    body = await get_ok(client, "/v1/customers/c1")
    assert body["segment"] == "enterprise"
    assert body["thresholds"] == {"at_risk_below": -25, "recover_at_or_above": -10}

    # Arrival order decides: a later event, even one backdated before the change, is 1.5×.
    t2 = now() - timedelta(days=1)
    t3 = now() - timedelta(days=10)
    await post_ok(client, event_at(id="after", subject="c1", at=t2))
    await post_ok(client, event_at(id="backdated", subject="c1", at=t3, type="sla.breached"))

    amounts = {e["id"]: e["amount"] for e in await whole_ledger(client, "c1")}
    assert amounts == {"before": 6.0, "after": 9.0, "backdated": -15.0}
    body = await get_ok(client, "/v1/customers/c1")
    assert body["entries"] == 3
    assert close(body["balance"], balance_at([(6.0, t1), (9.0, t2), (-15.0, t3)], now()))

    # The same segment again changes nothing; back to none restores the policy's thresholds.
    response = await client.put("/v1/customers/c1", json={"segment": "enterprise"})
    assert response.status_code == 200, response.text
    response = await client.put("/v1/customers/c1", json={"segment": None})
    assert response.status_code == 200, response.text
    body = await get_ok(client, "/v1/customers/c1")
    assert body["segment"] is None
    assert body["thresholds"] == {"at_risk_below": -15, "recover_at_or_above": -5}
    await post_ok(client, make_event(id="plain", subject="c1"))
    amounts = {e["id"]: e["amount"] for e in await whole_ledger(client, "c1")}
    assert amounts["plain"] == 6.0


@pytest.mark.parametrize(
    "body", [{"segment": "gold"}, {"segment": 5}, {}, {"segment": ["enterprise"]}]
)
async def test_a_bad_segment_is_a_422_problem(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    response = await client.put("/v1/customers/c1", json=body)
    assert_problem(response, status=422)
    assert (await get_ok(client, "/v1/customers/c1"))["segment"] is None


async def test_segment_change_re_evaluates_the_status_at_once(client: httpx.AsyncClient) -> None:
    """-12 is ok under the policy's -15, but at risk for `strategic` (below -10)."""
    await post_ok(client, make_event(id="p", subject="c1", type="promise.broken"))
    assert (await get_ok(client, "/v1/customers/c1"))["status"] == "ok"

    response = await client.put("/v1/customers/c1", json={"segment": "strategic"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "at_risk"
    [alert] = (await get_ok(client, "/v1/alerts"))["items"]
    assert alert["customer_id"] == "c1"
    assert alert["kind"] == "at_risk"
    assert alert["threshold"] == -10
    assert alert["balance"] < -10
    [listed] = (await get_ok(client, "/v1/at-risk"))["items"]
    assert listed["customer_id"] == "c1"


async def test_times_are_rfc3339_utc(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    body = await get_ok(client, "/v1/customers/c1/balance")
    assert body["at"].endswith("Z")
    assert datetime.fromisoformat(body["at"].replace("Z", "+00:00")).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
async def test_extreme_but_well_formed_at_is_answered_not_a_server_error(
    client: httpx.AsyncClient, at: str
) -> None:
    """Any RFC 3339 time gives 200 with the formula's value, or a 422 problem."""
    happened = now() - timedelta(minutes=1)
    await post_ok(client, make_event(id="e1", subject="c1", time=rfc(happened)))
    for path, name in (("balance", "at"), ("drivers", "since")):
        response = await client.get(f"/v1/customers/c1/{path}", params={name: at})
        if response.status_code == 422:
            assert_problem(response, status=422)
            continue
        assert response.status_code == 200, (path, response.status_code, response.text)
    response = await client.get("/v1/customers/c1/balance", params={"at": at})
    if response.status_code == 200:
        assert response.json()["balance"] == pytest.approx(0.0, abs=1e-9)


async def test_opening_balance_is_an_entry_at_the_first_arrival(
    clean: AsyncEngine, database_url: str
) -> None:
    """README: a non-zero opening balance is a ledger entry of type relbank.account.opened at
    the effective time of the first of the account's events to arrive."""
    client, lifespan = await open_client(database_url, policy=make_policy(opening_balance=10))
    try:
        base = now()
        first_arrival = base - timedelta(days=1)
        backdated = base - timedelta(days=10)
        await post_ok(client, event_at(id="first", subject="c1", at=first_arrival))
        await post_ok(client, event_at(id="older", subject="c1", at=backdated))
        posted = [(10.0, first_arrival), (6.0, first_arrival), (6.0, backdated)]

        ledger = await whole_ledger(client, "c1")
        [opened] = [e for e in ledger if e["type"] == "relbank.account.opened"]
        assert opened["amount"] == 10.0
        assert opened["source"] == "relbank"
        assert parse_time(opened["effective_at"]) == first_arrival
        assert len(ledger) == 3
        customer = await get_ok(client, "/v1/customers/c1")
        assert customer["entries"] == 3
        assert parse_time(customer["opened_at"]) == first_arrival
        assert close(customer["balance"], balance_at(posted, now()))
        for t in (base - timedelta(days=5), first_arrival, base):
            body = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(t)})
            assert close(body["balance"], balance_at(posted, t)), t
    finally:
        await close_client(client, lifespan)


async def test_without_a_half_life_nothing_decays(clean: AsyncEngine, database_url: str) -> None:
    client, lifespan = await open_client(database_url, policy=make_policy(half_life_days=None))
    try:
        await post_ok(
            client, make_event(id="a", subject="c1", time=rfc(now() - timedelta(days=400)))
        )
        await post_ok(client, make_event(id="b", subject="c1", type="cancellation.requested"))
        customer = await get_ok(client, "/v1/customers/c1")
        assert customer["balance"] == -14.0
        assert customer["next_transition_at"] is None
        assert (await get_ok(client, "/v1/policy"))["half_life_days"] is None
    finally:
        await close_client(client, lifespan)
