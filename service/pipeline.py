"""The whole pipeline in one place: decode → weigh → apply → alerts.

Every function that takes a connection runs in the caller's transaction; the application service
(`service.application`) is the only caller that opens one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import RESERVED_SOURCE, Event, InvalidEvent, Reason, validate
from service.domain.ledger import SEGMENT_CHANGED_TYPE, Account, Alert, StoredEvent, book, settle
from service.domain.policy import Policy
from service.storage import accounts, alerts, ledger, locks
from service.storage import events as event_store

ResultOutcome = Literal["applied", "duplicate", "unweighted", "rejected", "conflict"]


class Result(NamedTuple):
    """What happened to one submitted event."""

    outcome: ResultOutcome
    source: str | None = None
    id: str | None = None
    customer_id: str | None = None
    balance: float | None = None
    reason: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source": self.source,
            "id": self.id,
            "outcome": self.outcome,
            "customer_id": self.customer_id,
            "balance": self.balance,
        }
        if self.reason is not None:
            body["reason"] = self.reason
            body["detail"] = self.detail
        return body


def decode(item: Any, *, received_at: datetime, max_future_skew: timedelta) -> Event | Result:
    """Validate one decoded envelope; a broken rule becomes a `rejected` result, not an error."""
    try:
        return validate(item, received_at=received_at, max_future_skew=max_future_skew)
    except InvalidEvent as exc:
        source = item.get("source") if isinstance(item, dict) else None
        event_id = item.get("id") if isinstance(item, dict) else None
        return Result(
            "rejected",
            source=source if isinstance(source, str) else None,
            id=event_id if isinstance(event_id, str) else None,
            reason=exc.reason.value,
            detail=exc.detail,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    results: list[Result]
    alert_kinds: list[str]


def stored_event(seq: int, event: Event) -> StoredEvent:
    return StoredEvent(
        seq=seq,
        source=event.source,
        id=event.id,
        type=event.type,
        customer_id=event.customer_id,
        effective_at=event.effective_at,
        data=event.data,
        magnitude=event.magnitude,
    )


async def apply_batch(
    conn: AsyncConnection,
    events: Sequence[Event],
    *,
    policy: Policy,
    path: str,
    generation: int,
    now: datetime | None = None,
    balances: bool = True,
) -> Applied:
    """Store, weigh and post a batch of valid events in the caller's transaction, into the
    ledger `generation` (at `now`: the present unless history is being seeded). Without
    `balances` the results carry none (the Kafka path has nobody to tell).

    Duplicates (same (source, id), same content) are reported and change nothing; conflicts
    (same pair, other content) are reported and change nothing; everything else is booked once.
    """
    await locks.lock_customers(conn, (e.customer_id for e in events))
    # Within the batch: the first occurrence of a pair stands for it, later ones are judged
    # against it exactly as against the store.
    first: dict[tuple[str, str], Event] = {}
    for event in events:
        first.setdefault((event.source, event.id), event)
    inserted, existing = await event_store.insert_events(conn, list(first.values()), path=path)

    new_events: list[StoredEvent] = [stored_event(seq, first[key]) for key, seq in inserted.items()]
    customers = {e.customer_id for e in new_events} | {e.customer_id for e in existing.values()}
    known = await accounts.load(conn, customers)
    if now is None:
        now = datetime.now(UTC)
        now = max(now, *(e.received_at for e in events)) if events else now
    booking = book(new_events, known, policy, now=now)
    await ledger.insert(conn, booking, generation=generation)
    await accounts.save(conn, list(booking.accounts.values()))
    await record_alerts(conn, booking.alerts)
    # Each result reports the balance right after its event: earlier events of the batch count,
    # later ones do not.
    latest: dict[str, float] = (
        {customer: a.balance(now, policy) for customer, a in known.items()} if balances else {}
    )

    def balance(customer_id: str) -> float | None:
        return latest.get(customer_id)

    results: list[Result] = []
    booked: set[tuple[str, str]] = set()
    for event in events:
        key = (event.source, event.id)
        seq = inserted.get(key)
        if seq is not None and key not in booked:
            booked.add(key)
            outcome = booking.results[seq].outcome
            if balances:
                latest[event.customer_id] = booking.results[seq].balance(now, policy)
            results.append(
                Result(
                    outcome, event.source, event.id, event.customer_id, balance(event.customer_id)
                )
            )
            continue
        stored = existing.get(key)
        stored_hash = stored.content_hash if stored else first[key].content_hash
        if stored_hash == event.content_hash:
            results.append(
                Result(
                    "duplicate",
                    event.source,
                    event.id,
                    event.customer_id,
                    balance(event.customer_id),
                )
            )
        else:
            results.append(
                Result(
                    "conflict",
                    event.source,
                    event.id,
                    event.customer_id,
                    None,
                    reason=Reason.CONFLICT.value,
                    detail=f"event ({event.source}, {event.id}) was already received "
                    "with different content",
                )
            )
    return Applied(results, [a.kind for a in booking.alerts])


async def change_segment(
    conn: AsyncConnection,
    customer_id: str,
    segment: str | None,
    *,
    policy: Policy,
    generation: int,
    now: datetime | None = None,
) -> tuple[Account, list[str]]:
    """Record a segment change as an event of relbank's own and re-evaluate the account at once.

    Setting the segment an account already has stores nothing, so a retried PUT is harmless.
    """
    await locks.lock_customers(conn, [customer_id])
    current = await accounts.load(conn, [customer_id])
    if customer_id in current and current[customer_id].segment == segment:
        return current[customer_id], []
    now = now or datetime.now(UTC)
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": RESERVED_SOURCE,
        "type": SEGMENT_CHANGED_TYPE,
        "subject": customer_id,
        "time": now.isoformat(),
        "datacontenttype": "application/json",
        "data": {"segment": segment},
    }
    event = validate(envelope, received_at=now, max_future_skew=timedelta(0), internal=True)
    applied = await apply_batch(
        conn, [event], policy=policy, path="admin", generation=generation, now=now
    )
    account = (await accounts.load(conn, [customer_id]))[customer_id]
    return account, applied.alert_kinds


async def record_alerts(conn: AsyncConnection, raised: Sequence[Alert]) -> None:
    """Alerts, in the caller's transaction; each sink (the alerts topic, every webhook) reads
    them from the alerts table in id order."""
    await alerts.insert(conn, raised)


SWEEP_BATCH = 500


async def settle_due(conn: AsyncConnection, policy: Policy, *, now: datetime) -> list[Alert]:
    """Apply the transitions decay alone has brought due by `now` (cause "decay"), for up to
    SWEEP_BATCH accounts."""
    due = await accounts.due(conn, now, SWEEP_BATCH)
    if not due:
        return []
    await locks.lock_customers(conn, due)
    settled: list[Account] = []
    raised: list[Alert] = []
    for account in (await accounts.load(conn, due)).values():
        # Re-checked under the lock: another sweeper or a new event may have settled it.
        if account.next_transition_at is None or account.next_transition_at > now:
            continue
        account, alert = settle(account, policy, now=now, cause=None)
        settled.append(account)
        if alert:
            raised.append(alert)
    await accounts.save(conn, settled)
    await record_alerts(conn, raised)
    return raised
