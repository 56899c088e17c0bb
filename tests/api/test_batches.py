"""POST /v1/events with a JSON array (README): one result per input, in order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import orjson

from tests.support.events import make_event
from tests.support.http import assert_problem, event_at, get_ok, now, post_ok, whole_ledger
from tests.support.oracle import balance_at, close


async def test_mixed_batch_answers_each_input_in_order(client: httpx.AsyncClient) -> None:
    t0 = now() - timedelta(days=2)
    dup = event_at(id="old-1", subject="c1", at=t0)
    clash = event_at(id="old-2", subject="c1", at=t0)
    await post_ok(client, [dup, clash])

    batch: list[Any] = [
        event_at(id="n1", subject="c1", at=t0 + timedelta(hours=1), type="sla.breached"),
        {**make_event(id="bad-time", subject="c1"), "time": "not a time"},
        dup,
        {**clash, "type": "promise.broken"},
        event_at(id="n2", subject="c2", at=t0, type="crm.unknown"),
        42,
        {**make_event(id="bad-src", subject="c1"), "source": "relbank"},
        event_at(id="n3", subject="c2", at=t0, data={"magnitude": 2}),
        make_event(id="bad-mag", subject="c2", data={"magnitude": -3}),
    ]
    response = await client.post(
        "/v1/events",
        content=orjson.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(batch)
    assert [r["outcome"] for r in results] == [
        "applied",
        "rejected",
        "duplicate",
        "conflict",
        "unweighted",
        "rejected",
        "rejected",
        "applied",
        "rejected",
    ]
    assert [r.get("reason") for r in results] == [
        None,
        "bad_time",
        None,
        "conflict",
        None,
        "not_object",
        "reserved_source",
        None,
        "bad_magnitude",
    ]
    assert [r["id"] for r in results] == [
        "n1",
        "bad-time",
        "old-1",
        "old-2",
        "n2",
        None,
        "bad-src",
        "n3",
        "bad-mag",
    ]
    for result in results:
        if result["outcome"] == "rejected":
            assert isinstance(result["detail"], str)
            assert result["detail"]

    when = now()
    c1 = [(6.0, t0), (6.0, t0), (-10.0, t0 + timedelta(hours=1))]
    c2 = [(0.0, t0), (12.0, t0)]
    assert close(results[0]["balance"], balance_at(c1, when))
    assert close(results[7]["balance"], balance_at(c2, when))
    for customer, entries in (("c1", c1), ("c2", c2)):
        body = await get_ok(client, f"/v1/customers/{customer}")
        assert body["entries"] == len(entries)
        assert close(body["balance"], balance_at(entries, now()))
    ledger_c1 = await whole_ledger(client, "c1")
    assert sorted(e["id"] for e in ledger_c1) == ["n1", "old-1", "old-2"]
    assert {e["type"] for e in ledger_c1 if e["id"] == "old-2"} == {
        "support.resolved_first_contact"
    }


async def test_a_pair_twice_in_one_batch_is_booked_once(client: httpx.AsyncClient) -> None:
    event = make_event(id="twice", subject="c1")
    other = make_event(id="once", subject="c1", type="sla.breached")

    body = await post_ok(client, [event, other, event, event])

    assert [r["outcome"] for r in body["results"]] == [
        "applied",
        "applied",
        "duplicate",
        "duplicate",
    ]
    ledger = await whole_ledger(client, "c1")
    assert sorted(e["id"] for e in ledger) == ["once", "twice"]


async def test_a_pair_with_other_content_later_in_the_batch_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    event = make_event(id="k", subject="c1")
    clash = {**event, "type": "sla.breached"}

    body = await post_ok(client, [event, clash])

    assert [r["outcome"] for r in body["results"]] == ["applied", "conflict"]
    assert body["results"][1]["reason"] == "conflict"
    [entry] = await whole_ledger(client, "c1")
    assert entry["type"] == "support.resolved_first_contact"


async def test_an_all_invalid_batch_is_200_with_every_input_rejected(
    client: httpx.AsyncClient,
) -> None:
    body = await post_ok(client, [{"specversion": "1.0"}, "x", []])

    assert [r["outcome"] for r in body["results"]] == ["rejected"] * 3
    assert [r["reason"] for r in body["results"]] == [
        "missing_attribute",
        "not_object",
        "not_object",
    ]
    assert (await get_ok(client, "/v1/alerts"))["items"] == []


async def test_a_too_large_event_inside_a_batch_is_rejected_alone(
    client: httpx.AsyncClient,
) -> None:
    big = make_event(id="big", subject="c1", data={"blob": "x" * (64 * 1024)})
    body = await post_ok(client, [big, make_event(id="small", subject="c1")])

    assert [(r["outcome"], r.get("reason")) for r in body["results"]] == [
        ("rejected", "too_large"),
        ("applied", None),
    ]


async def test_an_empty_batch_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=[])
    assert_problem(response, status=422)


async def test_a_batch_of_1001_is_422_and_books_nothing(client: httpx.AsyncClient) -> None:
    batch = [make_event(id=f"e{i}", subject="c1") for i in range(1001)]
    response = await client.post("/v1/events", json=batch)

    assert_problem(response, status=422)
    assert (await client.get("/v1/customers/c1")).status_code == 404


async def test_a_batch_of_1000_is_applied_in_one_go(client: httpx.AsyncClient) -> None:
    t0 = now() - timedelta(days=1)
    batch = [
        event_at(id=f"e{i}", subject=f"c{i % 7}", at=t0 + timedelta(seconds=i)) for i in range(1000)
    ]
    body = await post_ok(client, batch)

    assert len(body["results"]) == 1000
    assert {r["outcome"] for r in body["results"]} == {"applied"}
    customer = await get_ok(client, "/v1/customers/c3")
    entries = [(6.0, t0 + timedelta(seconds=i)) for i in range(1000) if i % 7 == 3]
    assert customer["entries"] == len(entries)
    assert close(customer["balance"], balance_at(entries, now()))


async def test_each_result_carries_the_balance_right_after_its_event(
    client: httpx.AsyncClient,
) -> None:
    t0 = now() - timedelta(days=1)
    batch = [
        event_at(id="b1", subject="c1", at=t0),  # +6
        event_at(id="b2", subject="c1", at=t0, type="sla.breached"),  # -10
        event_at(id="b1", subject="c1", at=t0),  # the first again: a duplicate
        event_at(id="b3", subject="c1", at=t0),  # +6
    ]
    body = await post_ok(client, batch)

    assert [r["outcome"] for r in body["results"]] == ["applied", "applied", "duplicate", "applied"]
    when = now()
    after = [[6.0], [6.0, -10.0], [6.0, -10.0], [6.0, -10.0, 6.0]]
    for result, amounts in zip(body["results"], after, strict=True):
        assert close(result["balance"], balance_at([(a, t0) for a in amounts], when))
