"""Plain keyword-only factories shared by the domain tests (no pytest fixtures)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain import alerts
from service.domain.balance import Projection
from service.domain.envelope import Event, validate
from service.domain.ledger import Account, StoredEvent
from service.domain.policy import Policy, parse_policy

RECEIVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(minutes=5)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_envelope(
    *,
    specversion: Any = "1.0",
    id: Any = "e1",
    source: Any = "zendesk",
    type: Any = "support.resolved_first_contact",
    subject: Any = "cust-1",
    time: Any = "2026-11-23T11:00:00Z",
    data: Any = None,
    omit: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid CloudEvents envelope, with any attribute replaced, removed (`omit`) or added
    (`extra`: extensions, `datacontenttype`, an explicit `"data": None`, ...)."""
    envelope: dict[str, Any] = {
        "specversion": specversion,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": time,
    }
    if data is not None:
        envelope["data"] = data
    envelope.update(extra or {})
    for name in omit:
        envelope.pop(name, None)
    return envelope


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


def make_policy_document(
    *,
    version: str = "test-1",
    half_life_days: float | None = 90.0,
    opening_balance: float = 0.0,
    at_risk_below: float = -15.0,
    recover_at_or_above: float = -5.0,
    moments: Mapping[str, Any] | None = None,
    segments: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A small valid policy document (what `yaml.safe_load` gives for a policy file)."""
    document: dict[str, Any] = {
        "version": version,
        "half_life_days": half_life_days,
        "opening_balance": opening_balance,
        "thresholds": {
            "at_risk_below": at_risk_below,
            "recover_at_or_above": recover_at_or_above,
        },
        "moments": copy.deepcopy(dict(moments)) if moments is not None else default_moments(),
        "segments": (copy.deepcopy(dict(segments)) if segments is not None else default_segments()),
    }
    return document


def default_moments() -> dict[str, Any]:
    return {
        "support.resolved_first_contact": {"weight": 6, "pillar": "resolution"},
        "promise.broken": {"weight": -12, "pillar": "integrity"},
        "cancellation.requested": {"weight": -20, "pillar": "advocacy"},
        "renewal.signed": {"weight": 15, "pillar": "advocacy"},
        "survey.nps": {
            "pillar": "empathy",
            "field": "score",
            "bands": [
                {"min": 0, "max": 6, "weight": -12},
                {"min": 7, "max": 8, "weight": 0},
                {"min": 9, "max": 10, "weight": 10},
            ],
        },
    }


def default_segments() -> dict[str, Any]:
    return {
        "enterprise": {
            "weight_multiplier": 1.5,
            "thresholds": {"at_risk_below": -25, "recover_at_or_above": -10},
        },
        "smb": {"weight_multiplier": 1.0},
    }


def make_policy(
    *,
    version: str = "test-1",
    half_life_days: float | None = 90.0,
    opening_balance: float = 0.0,
    at_risk_below: float = -15.0,
    recover_at_or_above: float = -5.0,
    moments: Mapping[str, Any] | None = None,
    segments: Mapping[str, Any] | None = None,
) -> Policy:
    return parse_policy(
        make_policy_document(
            version=version,
            half_life_days=half_life_days,
            opening_balance=opening_balance,
            at_risk_below=at_risk_below,
            recover_at_or_above=recover_at_or_above,
            moments=moments,
            segments=segments,
        )
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
