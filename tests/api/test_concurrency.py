"""Many writers at once through the API: every (source, id) booked once, balances exact, no 5xx."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.api.helpers import close, event_at, get_ok, now, oracle, rfc, whole_ledger

WEIGHTS = {
    "support.resolved_first_contact": 6.0,
    "sla.breached": -10.0,
    "promise.kept": 4.0,
    "complaint.raised": -8.0,
    "crm.unknown": 0.0,
}


def nps_weight(score: int) -> float:
    return -12.0 if score <= 6 else 0.0 if score <= 8 else 10.0


def make_corpus(
    *, rng: random.Random, customers: list[str], count: int, prefix: str, base: datetime
) -> list[tuple[dict[str, Any], float, datetime]]:
    """`count` distinct events as (envelope, amount, effective_at), amounts from README."""
    corpus = []
    for i in range(count):
        customer = rng.choice(customers)
        at = base - timedelta(minutes=rng.randint(1, 200_000), microseconds=rng.randint(0, 10**6))
        if rng.random() < 0.2:
            score = rng.randint(0, 10)
            envelope = event_at(
                id=f"{prefix}{i}", subject=customer, at=at, type="survey.nps", data={"score": score}
            )
            amount = nps_weight(score)
        else:
            type_ = rng.choice(sorted(WEIGHTS))
            magnitude = rng.choice([1, 1, 1, 0.5, 2, 3.25])
            envelope = event_at(
                id=f"{prefix}{i}",
                subject=customer,
                at=at,
                type=type_,
                data={"magnitude": magnitude},
            )
            amount = WEIGHTS[type_] * magnitude
        corpus.append((envelope, amount, at))
    return corpus


async def check_customer(
    client: httpx.AsyncClient,
    customer: str,
    expected: list[tuple[dict[str, Any], float, datetime]],
) -> None:
    entries = [(amount, at) for _, amount, at in expected]
    body = await get_ok(client, f"/v1/customers/{customer}")
    assert body["entries"] == len(expected), customer
    assert close(body["balance"], oracle(entries, now())), (customer, body["balance"])
    t = now() - timedelta(hours=1)
    at_t = await get_ok(client, f"/v1/customers/{customer}/balance", params={"at": rfc(t)})
    assert close(at_t["balance"], oracle(entries, t)), customer
    ledger = await whole_ledger(client, customer, limit=50)
    pairs = Counter((e["source"], e["id"]) for e in ledger)
    assert max(pairs.values()) == 1, [p for p, n in pairs.items() if n > 1]
    assert set(pairs) == {("zendesk", env["id"]) for env, _, _ in expected}


async def test_concurrent_singles_and_batches(client: httpx.AsyncClient) -> None:
    rng = random.Random(2026)
    base = now()
    hot = "hot"
    customers = [hot, "b1", "b2", "b3", "b4"]

    # 50 concurrent single POSTs on one customer: 40 distinct events, 10 of them sent twice.
    singles = make_corpus(rng=rng, customers=[hot], count=40, prefix="s", base=base)
    single_bodies = [env for env, _, _ in singles] + [env for env, _, _ in singles[:10]]
    rng.shuffle(single_bodies)

    # 20 concurrent batches of 25 over 5 customers, drawn with overlap from 300 events,
    # so many pairs arrive in several batches at once (and some twice in one batch).
    pool = make_corpus(rng=rng, customers=customers, count=300, prefix="p", base=base)
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
        assert close(body["balance"], oracle(amounts, now()))
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
    assert close(body["balance"], oracle([(e["amount"], t) for e in ledger], now()))
