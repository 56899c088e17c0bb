"""GET /v1/customers/{id}/history (README): B(t) at evenly spaced instants, from the ledger,
in one query, equal to the README sum computed independently here."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.events import make_event
from tests.support.http import assert_problem, days_ago, event_at, get_ok, now, post_ok, rfc
from tests.support.oracle import balance_at, parse_time

# (type, weight in the default policy, days ago), posted in this order: arrival order is not
# time order, and the first to arrive (opened_at) is not the earliest.
MOMENTS = [
    ("promise.broken", -12.0, 90.0),
    ("support.resolved_first_contact", 6.0, 200.0),
    ("sla.breached", -10.0, 150.25),
    ("renewal.signed", 15.0, 120.0),
    ("proactive.fix", 7.0, 45.5),
    ("outage.affected", -8.0, 30.0),
    ("referral.made", 12.0, 7.0),
    ("complaint.raised", -8.0, 0.01),
]


def history_path(customer: str) -> str:
    return f"/v1/customers/{quote(customer, safe='')}/history"


async def post_story(client: httpx.AsyncClient, customer: str, base: datetime) -> list[Any]:
    posted = []
    for i, (type_, weight, days) in enumerate(MOMENTS):
        at = base - timedelta(days=days)
        await post_ok(client, event_at(id=f"h{i}", subject=customer, at=at, type=type_))
        posted.append((weight, at))
    return posted


def assert_formula(items: list[dict[str, Any]], entries: list[Any]) -> None:
    for item in items:
        t = parse_time(item["at"])
        want = balance_at(entries, t)
        scale = balance_at([(abs(a), at) for a, at in entries], t)
        assert math.isclose(item["balance"], want, rel_tol=1e-9, abs_tol=1e-9 * scale), item


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements `engine` runs meanwhile."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def app_engine(client: httpx.AsyncClient) -> AsyncEngine:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    engine: AsyncEngine = transport.app.state.runtime.db.engine  # type: ignore[attr-defined]
    return engine


async def test_explicit_range_is_exact_against_the_formula_in_one_query(
    client: httpx.AsyncClient,
) -> None:
    base = now()
    entries = await post_story(client, "c1", base)
    start, end = base - timedelta(days=250), base + timedelta(minutes=1)
    with statements(app_engine(client)) as seen:
        body = await get_ok(
            client,
            history_path("c1"),
            params={"from": rfc(start), "to": rfc(end), "points": 1000},
        )
    # One query reads the ledger (not one per point); the other is the one-row active-policy
    # lookup every read makes to follow a replay done elsewhere.
    assert len([q for q in seen if "ledger_entries" in q]) == 1, seen
    assert len(seen) <= 2, seen
    assert body["customer_id"] == "c1"
    items = body["items"]
    assert len(items) == 1000
    at = [parse_time(item["at"]) for item in items]
    assert (at[0], at[-1]) == (start, end)
    steps = {b - a for a, b in itertools.pairwise(at)}
    assert max(steps) - min(steps) <= timedelta(microseconds=1)
    assert all(item["at"].endswith("Z") for item in items)
    assert_formula(items, entries)
    # Before the first entry the balance is 0.
    assert items[0]["balance"] == 0.0


async def test_defaults_run_from_opened_at_to_now_in_100_points(
    client: httpx.AsyncClient,
) -> None:
    base = now()
    entries = await post_story(client, "c2", base)
    account = await get_ok(client, "/v1/customers/c2")
    before = now()
    body = await get_ok(client, history_path("c2"))
    after = now()
    items = body["items"]
    assert len(items) == 100
    assert items[0]["at"] == account["opened_at"]
    assert before <= parse_time(items[-1]["at"]) <= after
    assert_formula(items, entries)


async def test_a_customer_id_with_slashes_and_the_catch_all_still_routes(
    client: httpx.AsyncClient,
) -> None:
    customer = "acme/eu é%20"
    at = days_ago(days=3)
    await post_ok(client, make_event(id="s1", subject=customer, time=rfc(at)))
    body = await get_ok(client, history_path(customer), params={"points": 2})
    assert body["customer_id"] == customer
    assert_formula(body["items"], [(6.0, at)])
    # The customer itself is still served by the catch-all route.
    assert (await get_ok(client, f"/v1/customers/{quote(customer, safe='')}"))["entries"] == 1


async def test_points_from_2_to_1000(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="p", subject="c3"))
    path = history_path("c3")
    assert len((await get_ok(client, path, params={"points": 2}))["items"]) == 2
    for bad in ("1", "0", "1001", "many"):
        assert_problem(await client.get(path, params={"points": bad}), status=422)


async def test_from_after_to_and_bad_times_are_422(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="p", subject="c4"))
    path = history_path("c4")
    t = datetime(2026, 5, 1, tzinfo=UTC)
    body = assert_problem(
        await client.get(path, params={"from": rfc(t), "to": rfc(t - timedelta(seconds=1))}),
        status=422,
    )
    assert "`from`" in body["detail"]
    for name in ("from", "to"):
        body = assert_problem(await client.get(path, params={name: "yesterday"}), status=422)
        assert f"`{name}`" in body["detail"]
    # A zero-length span is fine: every point is that instant.
    same = await get_ok(client, path, params={"from": rfc(t), "to": rfc(t), "points": 3})
    assert [item["at"] for item in same["items"]] == [rfc(t)] * 3


async def test_unknown_customer_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(history_path("nobody")), status=404)


async def test_entries_before_opened_at_count_when_the_range_reaches_them(
    client: httpx.AsyncClient,
) -> None:
    """opened_at is the time of the first event to *arrive*; a later, backdated one lies before
    it and still belongs to B(t) for t after it."""
    base = now()
    first = base - timedelta(days=10)
    earlier = base - timedelta(days=40)
    await post_ok(client, event_at(id="a", subject="c5", at=first))
    await post_ok(client, event_at(id="b", subject="c5", at=earlier, type="sla.breached"))
    entries = [(6.0, first), (-10.0, earlier)]
    body = await get_ok(
        client, history_path("c5"), params={"from": rfc(base - timedelta(days=50)), "points": 51}
    )
    assert_formula(body["items"], entries)
    assert min(item["balance"] for item in body["items"]) < 0
