"""The sweeper applies the crossings that decay alone brings due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.ledger import Alert
from service.domain.policy import Policy
from service.storage import accounts
from tests.support.app import alert_items, apply, relbank
from tests.support.events import make_event
from tests.support.policy import make_policy


async def sweep(engine: AsyncEngine, policy: Policy, at: datetime) -> list[Alert]:
    return await relbank(engine, policy).sweep(now=at)


async def test_negative_balance_recovers_by_decay(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    happened = datetime.now(UTC) - timedelta(minutes=1)
    cancellation = make_event(
        id="x", subject="c1", type="cancellation.requested", time=happened.isoformat()
    )
    await apply(clean, default_policy, [cancellation])
    async with clean.connect() as conn:
        account = await accounts.one(conn, "c1")
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
    assert (alert.at, alert.balance) == (due, -5)
    async with clean.connect() as conn:
        account = await accounts.one(conn, "c1")
    [item] = [a for a in await alert_items(clean) if a["kind"] == "recovered"]
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
        account = await accounts.one(conn, "c2")
    assert account is not None
    assert account.status == "ok"
    assert account.next_transition_at is not None
    [alert] = await sweep(clean, policy, account.next_transition_at + timedelta(seconds=1))
    assert alert.kind == "at_risk"
    # Dated at the crossing, not at the sweep, with the threshold as its balance (README).
    assert alert.at == account.next_transition_at
    assert alert.threshold == alert.balance == 5
