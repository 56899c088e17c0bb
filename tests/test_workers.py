"""The sweeper applies the crossings that decay alone brings due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.ledger import Alert
from service.domain.policy import Policy
from service.storage import reads
from service.workers import sweep_once
from tests.conftest import make_policy
from tests.factories import make_event
from tests.test_pipeline import TOPIC, apply


async def sweep(engine: AsyncEngine, policy: Policy, at: datetime) -> list[Alert]:
    async with engine.begin() as conn:
        return await sweep_once(conn, policy, alerts_topic=TOPIC, now=at)


async def test_negative_balance_recovers_by_decay(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    happened = datetime.now(UTC) - timedelta(minutes=1)
    cancellation = make_event(
        id="x", subject="c1", type="cancellation.requested", time=happened.isoformat()
    )
    await apply(clean, default_policy, [cancellation])
    async with clean.connect() as conn:
        account = await reads.account(conn, "c1")
    assert account is not None
    assert account.status == "at_risk"
    due = account.next_transition_at
    assert due is not None
    # -20 decays to the recovery level -5 after two half-lives.
    assert abs((due - happened).total_seconds() - 180 * 86_400) < 1e-3
    assert await sweep(clean, default_policy, due - timedelta(days=1)) == []
    [alert] = await sweep(clean, default_policy, due + timedelta(seconds=1))
    assert alert.kind == "recovered"
    assert alert.cause_source is None
    async with clean.connect() as conn:
        account = await reads.account(conn, "c1")
        [item] = [
            a for a in await reads.alerts_after(conn, after=0, limit=10) if a["kind"] == "recovered"
        ]
    assert account is not None
    assert account.status == "ok"
    assert account.next_transition_at is None
    assert item["cause"] == "decay"
    # A second sweep finds nothing more to do.
    assert await sweep(clean, default_policy, due + timedelta(days=1)) == []


async def test_silence_is_a_risk_with_a_positive_threshold(clean: AsyncEngine) -> None:
    policy = make_policy(thresholds={"at_risk_below": 5, "recover_at_or_above": 10})
    await apply(clean, policy, [make_event(id="r", subject="c2", type="renewal.signed")])
    async with clean.connect() as conn:
        account = await reads.account(conn, "c2")
    assert account is not None
    assert account.status == "ok"
    assert account.next_transition_at is not None
    [alert] = await sweep(clean, policy, account.next_transition_at + timedelta(seconds=1))
    assert alert.kind == "at_risk"
    assert alert.threshold == 5
    assert alert.balance < 5
