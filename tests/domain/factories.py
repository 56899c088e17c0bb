"""Plain keyword-only factories of domain objects for the domain tests (no pytest fixtures).

Envelopes come from `tests.support.events`, policies from `tests.support.policy`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain import alerts
from service.domain.balance import Projection
from service.domain.envelope import Event, validate
from service.domain.ledger import Account, StoredEvent

RECEIVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(minutes=5)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check(
    envelope: Any,
    *,
    received_at: datetime = RECEIVED_AT,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
    internal: bool = False,
) -> Event:
    """`validate` with the test clock."""
    return validate(
        envelope, received_at=received_at, max_future_skew=max_future_skew, internal=internal
    )


def make_stored_event(
    *,
    seq: int = 1,
    source: str = "zendesk",
    id: str | None = None,
    type: str = "support.resolved_first_contact",
    customer_id: str = "c1",
    effective_at: datetime = T0,
    data: dict[str, Any] | None = None,
    magnitude: float = 1.0,
) -> StoredEvent:
    return StoredEvent(
        seq=seq,
        source=source,
        id=id if id is not None else f"e{seq}",
        type=type,
        customer_id=customer_id,
        effective_at=effective_at,
        data=data,
        magnitude=magnitude,
    )


def make_account(
    *,
    customer_id: str = "c1",
    segment: str | None = None,
    balance: float = 0.0,
    at: datetime = T0,
    status: alerts.Status = "ok",
    entries: int = 1,
) -> Account:
    """An existing account whose balance is `balance` at `at` (its last entry)."""
    return Account(
        customer_id=customer_id,
        segment=segment,
        projection=Projection(balance, at),
        status=status,
        status_since=at,
        opened_at=at,
        last_event_at=at,
        entries=entries,
    )
