"""The apply path against real PostgreSQL: invariants under duplicates, conflicts, concurrency."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy
from service.storage import accounts
from tests.support.app import alert_items, apply, relbank
from tests.support.corpus import make_corpus
from tests.support.db import scalar
from tests.support.events import make_event
from tests.support.oracle import book_all


def expected_balance(items: list[dict[str, Any]], at: datetime) -> float:
    """The oracle's balance of the distinct events (no segments here)."""
    return book_all(items, received_at=at).balance(items[0]["subject"], at)


def corpus(*, customers: int, n: int, seed: int) -> list[dict[str, Any]]:
    return make_corpus(n, seed=seed, customers=[f"c{i}" for i in range(customers)], prefix="ev-")


async def test_duplicates_and_conflicts_change_nothing(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    first = make_event(id="x", subject="c1", type="sla.breached")
    applied = await apply(clean, default_policy, [first])
    assert [r.outcome for r in applied.results] == ["applied"]
    again = await apply(clean, default_policy, [first, {**first, "subject": "c2"}])
    assert [r.outcome for r in again.results] == ["duplicate", "conflict"]
    assert (
        again.results[0].balance == applied.results[0].balance
        or abs(
            again.results[0].balance - applied.results[0].balance  # type: ignore[operator]
        )
        < 1e-6
    )
    assert await scalar(clean, "SELECT count(*) FROM ledger_entries") == 1
    assert await scalar(clean, "SELECT count(*) FROM accounts WHERE customer_id = 'c2'") == 0


async def test_conflict_inside_one_batch(clean: AsyncEngine, default_policy: Policy) -> None:
    a = make_event(id="x", subject="c1")
    applied = await apply(clean, default_policy, [a, a, {**a, "type": "sla.breached"}])
    assert [r.outcome for r in applied.results] == ["applied", "duplicate", "conflict"]
    assert await scalar(clean, "SELECT count(*) FROM events") == 1


async def test_concurrent_writers_on_one_customer(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    items = corpus(customers=1, n=200, seed=1)
    # 40 writers, overlapping slices: every event is submitted by two writers.
    slices = [items[i * 5 : i * 5 + 10] for i in range(40)]
    await asyncio.gather(*(apply(clean, default_policy, s) for s in slices))
    assert await scalar(clean, "SELECT count(*) FROM ledger_entries") == 200
    assert await scalar(clean, "SELECT count(DISTINCT event_seq) FROM ledger_entries") == 200
    now = datetime.now(UTC)
    async with clean.connect() as conn:
        account = await accounts.one(conn, "c0")
    assert account is not None
    assert account.entries == 200
    got = account.balance(now, default_policy)
    want = expected_balance(items, now)
    assert abs(got - want) <= 1e-9 * max(1.0, abs(want))


async def test_concurrent_batches_over_many_customers(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    """Batches that share customers in different orders: no deadlock escapes, nothing lost."""
    items = corpus(customers=15, n=600, seed=2)
    rng = random.Random(3)
    batches = []
    for _ in range(30):
        batch = rng.sample(items, 40)
        batches.append(batch)
    batches.append(items)  # makes sure every event arrives at least once
    await asyncio.gather(*(apply(clean, default_policy, b) for b in batches))
    assert await scalar(clean, "SELECT count(*) FROM ledger_entries") == 600
    now = datetime.now(UTC)
    async with clean.connect() as conn:
        for c in range(15):
            account = await accounts.one(conn, f"c{c}")
            assert account is not None
            mine = [i for i in items if i["subject"] == f"c{c}"]
            want = expected_balance(mine, now)
            assert abs(account.balance(now, default_policy) - want) <= 1e-9 * max(1.0, abs(want))


async def test_alert_feed_never_skips_under_concurrent_commits(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    """Writers raise alerts concurrently while a poller follows `after=`; the poller must see
    every alert exactly once, in id order, even though transactions commit in any order."""
    seen: list[int] = []
    done = asyncio.Event()

    async def poll() -> None:
        after = 0
        while True:
            finished = done.is_set()
            items = await alert_items(clean, after=after)
            for item in items:
                seen.append(int(item["alert_id"]))
                after = int(item["alert_id"])
            if finished and not items:
                return
            await asyncio.sleep(0)

    async def writer(k: int) -> None:
        for j in range(6):
            # Alternate at_risk / recovered for customer k: every batch raises one alert.
            # Two cancellations (-40) then three renewals (+45): every batch crosses a level.
            kind, n = ("cancellation.requested", 2) if j % 2 == 0 else ("renewal.signed", 3)
            batch = [make_event(id=f"w{k}-{j}-{m}", subject=f"w{k}", type=kind) for m in range(n)]
            await apply(clean, default_policy, batch)

    poller = asyncio.create_task(poll())
    await asyncio.gather(*(writer(k) for k in range(12)))
    done.set()
    await poller
    total = await scalar(clean, "SELECT count(*) FROM alerts")
    assert total == 72
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == total


async def test_new_account_evaluated_at_once(clean: AsyncEngine, default_policy: Policy) -> None:
    applied = await apply(
        clean, default_policy, [make_event(id="c", subject="n1", type="cancellation.requested")]
    )
    assert applied.alert_kinds == ["at_risk"]
    [alert] = await alert_items(clean)
    assert alert["cause"] == {"source": "zendesk", "id": "c"}
    assert alert["threshold"] == -15
    assert await relbank(clean, default_policy).sinks.topic_backlog() == 1
