"""The whole pipeline in one place: decode → weigh → apply → alerts.

HTTP and Kafka both call `apply_batch` inside a transaction they own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import RESERVED_SOURCE, Event, InvalidEvent, Reason, validate
from service.domain.ledger import SEGMENT_CHANGED_TYPE, Account, StoredEvent, book
from service.domain.policy import Policy
from service.storage import writes

ResultOutcome = Literal["applied", "duplicate", "unweighted", "rejected", "conflict"]


@dataclass(frozen=True, slots=True)
class Result:
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


def decode(
    item: Any, *, received_at: datetime, max_future_skew: timedelta, encoded_size: int | None = None
) -> Event | Result:
    """Validate one decoded envelope; a broken rule becomes a `rejected` result, not an error."""
    try:
        return validate(
            item,
            received_at=received_at,
            max_future_skew=max_future_skew,
            encoded_size=encoded_size,
        )
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


async def apply_batch(
    conn: AsyncConnection,
    events: Sequence[Event],
    *,
    policy: Policy,
    path: str,
    alerts_topic: str,
) -> Applied:
    """Store, weigh and post a batch of valid events in the caller's transaction.

    Duplicates (same (source, id), same content) are reported and change nothing; conflicts
    (same pair, other content) are reported and change nothing; everything else is booked once.
    """
    await writes.lock_customers(conn, (e.customer_id for e in events))
    # Within the batch: the first occurrence of a pair stands for it, later ones are judged
    # against it exactly as against the store.
    first: dict[tuple[str, str], Event] = {}
    for event in events:
        first.setdefault((event.source, event.id), event)
    inserted, existing = await writes.insert_events(conn, list(first.values()), path=path)

    new_events: list[StoredEvent] = [
        writes.stored_event(seq, first[key]) for key, seq in inserted.items()
    ]
    customers = {e.customer_id for e in new_events} | {e.customer_id for e in existing.values()}
    accounts = await writes.load_accounts(conn, customers)
    now = max(datetime.now(UTC), *(e.received_at for e in events)) if events else datetime.now(UTC)
    booking = book(new_events, accounts, policy, now=now)
    await writes.write_booking(conn, booking, alerts_topic=alerts_topic)
    accounts.update(booking.accounts)

    def balance(customer_id: str) -> float | None:
        account = accounts.get(customer_id)
        return account.balance(now, policy) if account else None

    results: list[Result] = []
    booked: set[tuple[str, str]] = set()
    for event in events:
        key = (event.source, event.id)
        seq = inserted.get(key)
        if seq is not None and key not in booked:
            booked.add(key)
            outcome = booking.results[seq].outcome
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
    alerts_topic: str,
) -> tuple[Account, list[str]]:
    """Record a segment change as an event of relbank's own and re-evaluate the account at once.

    Setting the segment an account already has stores nothing, so a retried PUT is harmless.
    """
    await writes.lock_customers(conn, [customer_id])
    current = await writes.load_accounts(conn, [customer_id])
    if customer_id in current and current[customer_id].segment == segment:
        return current[customer_id], []
    now = datetime.now(UTC)
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
        conn, [event], policy=policy, path="admin", alerts_topic=alerts_topic
    )
    account = (await writes.load_accounts(conn, [customer_id]))[customer_id]
    return account, applied.alert_kinds
