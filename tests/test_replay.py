"""Replay rebuilds the ledger and projections from the event store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy
from service.storage import accounts, policies
from tests.support.app import apply, relbank
from tests.support.corpus import make_corpus
from tests.support.db import scalar
from tests.support.events import make_event
from tests.support.policy import make_policy

# The ledger readers see: the active generation (1 before anything was activated).
ACTIVE = "generation = coalesce((SELECT generation FROM projection_state WHERE id = 1), 1)"


async def balances(engine: AsyncEngine, policy: Policy, now: datetime) -> dict[str, float]:
    """B(now) of every account; a fixed `now`, since balances decay between two reads."""
    async with engine.connect() as conn:
        found = await accounts.load_all(conn)
    return {c: a.balance(now, policy) for c, a in found.items()}


async def run_replay(engine: AsyncEngine, policy: Policy) -> None:
    await relbank(engine, policy).replay(policy)


async def set_segment(engine: AsyncEngine, policy: Policy, customer: str, segment: str) -> None:
    await relbank(engine, policy).change_segment(customer, segment)


async def test_replay_reproduces_live_balances(clean: AsyncEngine, default_policy: Policy) -> None:
    items = make_corpus(400, seed=5, customers=[f"c{i}" for i in range(20)], prefix="ev-")
    items.append(make_event(id="u1", subject="c1", type="not.in.policy"))
    await apply(clean, default_policy, items[:200])
    await set_segment(clean, default_policy, "c3", "enterprise")
    await apply(clean, default_policy, items[200:])
    at = datetime.now(UTC)
    live = await balances(clean, default_policy, at)
    entries = await scalar(clean, f"SELECT count(*) FROM ledger_entries WHERE {ACTIVE}")
    alerts = await scalar(clean, "SELECT count(*) FROM alerts")

    await run_replay(clean, default_policy)

    replayed = await balances(clean, default_policy, at)
    assert replayed.keys() == live.keys()
    for customer, balance in live.items():
        assert replayed[customer] == pytest.approx(balance, rel=1e-9, abs=1e-9)
    assert await scalar(clean, f"SELECT count(*) FROM ledger_entries WHERE {ACTIVE}") == entries
    # The ledger is append-only: the rebuilt one is a new generation beside the old one.
    assert await scalar(clean, "SELECT count(*) FROM ledger_entries") == 2 * entries
    assert await scalar(clean, "SELECT generation FROM projection_state") == 2
    # Same policy, same statuses: replay raises nothing new; earlier alerts stay.
    assert await scalar(clean, "SELECT count(*) FROM alerts") == alerts


async def test_replay_under_new_policy_reweighs_and_alerts(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    await apply(clean, default_policy, [make_event(id="p1", subject="c1", type="promise.broken")])
    # promise.broken weighs -12: ok. A harsher policy makes it -30: at risk after replay.
    harsher = make_policy(
        version="harsher",
        moments={
            **default_policy.model_dump(mode="json")["moments"],
            "promise.broken": {"weight": -30, "pillar": "integrity"},
        },
    )
    await run_replay(clean, harsher)
    [balance] = (await balances(clean, harsher, datetime.now(UTC))).values()
    assert balance == pytest.approx(-30, rel=1e-3)
    assert await scalar(clean, f"SELECT policy_version FROM ledger_entries WHERE {ACTIVE}") == (
        "harsher"
    )
    assert await scalar(clean, "SELECT kind FROM alerts") == "at_risk"
    assert await scalar(clean, "SELECT cause_id FROM alerts") == "replay:harsher"


async def test_half_life_change_needs_replay(clean: AsyncEngine, default_policy: Policy) -> None:
    async with clean.begin() as conn:
        await policies.activate(conn, default_policy)
    await apply(clean, default_policy, [make_event(id="h1", subject="c1")])
    slower = make_policy(version="slower", half_life_days=180)
    with pytest.raises(policies.PolicyMismatch, match="relbank replay"):
        async with clean.begin() as conn:
            await policies.activate(conn, slower)
    await run_replay(clean, slower)
    async with clean.begin() as conn:
        await policies.activate(conn, slower)  # now in step: no error
