"""Many writers at once through the API: every (source, id) booked once, balances exact, no 5xx."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.support.corpus import make_corpus
from tests.support.http import event_at, get_ok, now, rfc, whole_ledger
from tests.support.oracle import Contract, balance_at, close, parse_time

CONTRACT = Contract()
Booked = tuple[dict[str, Any], float, datetime]


def corpus(
    *, seed: int, customers: list[str], count: int, prefix: str, base: datetime
) -> list[Booked]:
    """`count` distinct events of the shared corpus as (envelope, amount, effective_at), amounts
    from the oracle."""
    events = make_corpus(count, seed=seed, customers=customers, prefix=prefix, at=base)
    return [(e, CONTRACT.amount(e), parse_time(e["time"])) for e in events]


async def check_customer(
    client: httpx.AsyncClient,
    customer: str,
    expected: list[Booked],
) -> None:
    entries = [(amount, at) for _, amount, at in expected]
    body = await get_ok(client, f"/v1/customers/{customer}")
    assert body["entries"] == len(expected), customer
    assert close(body["balance"], balance_at(entries, now())), (customer, body["balance"])
    t = now() - timedelta(hours=1)
    at_t = await get_ok(client, f"/v1/customers/{customer}/balance", params={"at": rfc(t)})
    assert close(at_t["balance"], balance_at(entries, t)), customer
    ledger = await whole_ledger(client, customer, limit=50)
    pairs = Counter((e["source"], e["id"]) for e in ledger)
    assert max(pairs.values()) == 1, [p for p, n in pairs.items() if n > 1]
    assert set(pairs) == {(env["source"], env["id"]) for env, _, _ in expected}


async def test_concurrent_singles_and_batches(client: httpx.AsyncClient) -> None:
    rng = random.Random(2026)
    base = now()
    hot = "hot"
    customers = [hot, "b1", "b2", "b3", "b4"]

    # 50 concurrent single POSTs on one customer: 40 distinct events, 10 of them sent twice.
    singles = corpus(seed=1, customers=[hot], count=40, prefix="s", base=base)
    single_bodies = [env for env, _, _ in singles] + [env for env, _, _ in singles[:10]]
    rng.shuffle(single_bodies)

    # 20 concurrent batches of 25 over 5 customers, drawn with overlap from 300 events,
    # so many pairs arrive in several batches at once (and some twice in one batch).
    pool = corpus(seed=2, customers=customers, count=300, prefix="p", base=base)
    batches = [[rng.choice(pool)[0] for _ in range(25)] for _ in range(20)]
    sent_ids = {env["id"] for batch in batches for env in batch}

    async def post(body: Any) -> httpx.Response:
        return await client.post("/v1/events", json=body)

    responses = await asyncio.gather(*(post(b) for b in [*single_bodies, *batches]))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 70}, statuses
    results: list[dict[str, Any]] = [r.json() for r in responses[:50]]
    for response in responses[50:]:
        results.extend(response.json()["results"])
    assert len(results) == 50 + 20 * 25
    by_pair: dict[str, list[str]] = {}
    for result in results:
        by_pair.setdefault(result["id"], []).append(result["outcome"])
    for id_, outcomes in by_pair.items():
        booked = [o for o in outcomes if o in ("applied", "unweighted")]
        assert len(booked) == 1, (id_, outcomes)
        assert set(outcomes) - {"applied", "unweighted", "duplicate"} == set(), (id_, outcomes)

    distinct = singles + [e for e in pool if e[0]["id"] in sent_ids]
    for customer in customers:
        await check_customer(client, customer, [e for e in distinct if e[0]["subject"] == customer])
    # Nobody else was created.
    assert (await client.get("/v1/customers/nobody")).status_code == 404


async def test_concurrent_conflicts_across_customers_are_decided_once(
    client: httpx.AsyncClient,
) -> None:
    """Pairs claimed with other content for other customers, in opposite orders, at once:
    each pair is booked for exactly one customer and the loser sees a conflict, never a 5xx."""
    t = now() - timedelta(hours=2)
    rounds = 10
    batches: list[list[dict[str, Any]]] = []
    for r in range(rounds):
        x, y = f"x{r}", f"y{r}"
        batches.append([event_at(id=x, subject="A", at=t), event_at(id=y, subject="B", at=t)])
        batches.append(
            [
                event_at(id=y, subject="C", at=t, type="sla.breached"),
                event_at(id=x, subject="D", at=t, type="sla.breached"),
            ]
        )

    responses = await asyncio.gather(*(client.post("/v1/events", json=b) for b in batches))

    assert [r.status_code for r in responses] == [200] * len(batches)
    outcomes: dict[str, list[str]] = {}
    for response in responses:
        for result in response.json()["results"]:
            outcomes.setdefault(result["id"], []).append(result["outcome"])
    for id_, seen in outcomes.items():
        assert sorted(seen) == ["applied", "conflict"], (id_, seen)
    booked: Counter[str] = Counter()
    for customer in "ABCD":
        response = await client.get(f"/v1/customers/{customer}")
        if response.status_code == 404:
            continue
        ledger = await whole_ledger(client, customer)
        booked.update(e["id"] for e in ledger)
        body = response.json()
        assert body["entries"] == len(ledger)
        amounts = [(e["amount"], t) for e in ledger]
        assert close(body["balance"], balance_at(amounts, now()))
    assert sorted(booked) == sorted(outcomes)
    assert set(booked.values()) == {1}


async def test_concurrent_segment_changes_and_events(client: httpx.AsyncClient) -> None:
    """PUTs racing with events on the same customer: every event booked once, every amount is
    the weight times the multiplier of the segment in force when it arrived (1 or 1.5)."""
    t = now() - timedelta(minutes=30)
    events = [event_at(id=f"g{i}", subject="seg", at=t) for i in range(30)]
    puts = [{"segment": "enterprise" if i % 2 == 0 else None} for i in range(10)]

    responses = await asyncio.gather(
        *(client.post("/v1/events", json=e) for e in events),
        *(client.put("/v1/customers/seg", json=p) for p in puts),
    )

    assert [r.status_code for r in responses] == [200] * 40
    ledger = await whole_ledger(client, "seg")
    assert sorted(e["id"] for e in ledger) == sorted(e["id"] for e in events)
    assert {e["amount"] for e in ledger} <= {6.0, 9.0}
    body = await get_ok(client, "/v1/customers/seg")
    assert close(body["balance"], balance_at([(e["amount"], t) for e in ledger], now()))
