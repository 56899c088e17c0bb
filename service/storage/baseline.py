"""`relbank bench baseline`: the straightforward way to store an event, for comparison only.

The SQLAlchemy ORM, one event per transaction (the caller's): look the event up, add it, load
the account with FOR UPDATE, weigh and post with the same domain code as the service, add the
ledger entry, the account and any alert. Runs on a scratch schema (see `bench`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped

from service.domain.balance import Projection
from service.domain.envelope import Event
from service.domain.ledger import Account, StoredEvent, book
from service.domain.policy import Policy
from service.storage import tables


class _Base(DeclarativeBase):
    pass


class EventRow(_Base):
    __table__ = tables.events
    seq: Mapped[int]
    content_hash: Mapped[bytes]


class EntryRow(_Base):
    __table__ = tables.ledger_entries


class AccountRow(_Base):
    __table__ = tables.accounts
    customer_id: Mapped[str]
    segment: Mapped[str | None]
    ref_balance: Mapped[float]
    ref_time: Mapped[datetime | None]
    status: Mapped[str]
    status_since: Mapped[datetime]
    opened_at: Mapped[datetime]
    last_event_at: Mapped[datetime]
    entries: Mapped[int]
    next_transition_at: Mapped[datetime | None]
    rank_sign: Mapped[int]
    rank_value: Mapped[float]


class AlertRow(_Base):
    __table__ = tables.alerts
    alert_id: Mapped[int]


async def session(conn: AsyncConnection, schema: str) -> AsyncSession:
    """An ORM session in the connection's transaction, on the tables of the scratch `schema`."""
    return AsyncSession(bind=await conn.execution_options(schema_translate_map={None: schema}))


def _account(row: AccountRow) -> Account:
    return Account(
        customer_id=row.customer_id,
        segment=row.segment,
        projection=Projection(row.ref_balance, row.ref_time),
        status="at_risk" if row.status == "at_risk" else "ok",
        status_since=row.status_since,
        opened_at=row.opened_at,
        last_event_at=row.last_event_at,
        entries=row.entries,
        next_transition_at=row.next_transition_at,
        rank=(row.rank_sign, row.rank_value),
    )


def _fields(account: Account) -> dict[str, Any]:
    return {
        "segment": account.segment,
        "ref_balance": account.projection.ref_balance,
        "ref_time": account.projection.ref_time,
        "status": account.status,
        "status_since": account.status_since,
        "opened_at": account.opened_at,
        "last_event_at": account.last_event_at,
        "entries": account.entries,
        "next_transition_at": account.next_transition_at,
        "rank_sign": account.rank[0],
        "rank_value": account.rank[1],
    }


async def apply_one(
    session: AsyncSession,
    event: Event,
    policy: Policy,
) -> str:
    """Store and book one event in the session's transaction; its outcome."""
    stored = await session.scalar(
        select(EventRow).where(
            tables.events.c.source == event.source, tables.events.c.event_id == event.id
        )
    )
    if stored is not None:
        return "duplicate" if stored.content_hash == event.content_hash else "conflict"
    row = EventRow(
        source=event.source,
        event_id=event.id,
        customer_id=event.customer_id,
        type=event.type,
        time=event.time,
        effective_at=event.effective_at,
        received_at=event.received_at,
        magnitude=event.magnitude,
        content_hash=event.content_hash,
        envelope=event.envelope,
        path="bench",
    )
    session.add(row)
    await session.flush()
    account_row = await session.get(AccountRow, event.customer_id, with_for_update=True)
    known = {event.customer_id: _account(account_row)} if account_row else {}
    new = StoredEvent(
        row.seq,
        event.source,
        event.id,
        event.type,
        event.customer_id,
        event.effective_at,
        event.data,
        event.magnitude,
    )
    booking = book([new], known, policy, now=datetime.now(UTC))
    for entry in booking.entries:
        session.add(
            EntryRow(
                customer_id=entry.customer_id,
                event_seq=entry.event_seq,
                source=entry.source,
                event_id=entry.id,
                type=entry.type,
                pillar=entry.pillar,
                amount=entry.amount,
                effective_at=entry.effective_at,
                policy_version=entry.policy_version,
                outcome=entry.outcome,
                reason=entry.reason,
            )
        )
    account = booking.accounts[event.customer_id]
    if account_row is None:
        session.add(AccountRow(customer_id=account.customer_id, **_fields(account)))
    else:
        for name, value in _fields(account).items():
            setattr(account_row, name, value)
    for alert in booking.alerts:
        session.add(
            AlertRow(
                customer_id=alert.customer_id,
                kind=alert.kind,
                balance=alert.balance,
                threshold=alert.threshold,
                at=alert.at,
                cause_source=alert.cause_source,
                cause_id=alert.cause_id,
            )
        )
    return booking.results[row.seq].outcome
