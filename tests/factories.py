"""Factories shared by the adapter tests (storage, API, Kafka): plain keyword-only functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.domain.factories import make_envelope


def ago(**delta: float) -> str:
    """An RFC 3339 time `delta` before now, e.g. ago(days=3)."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def make_event(
    *,
    id: str = "e1",
    subject: str = "cust-1",
    type: str = "support.resolved_first_contact",
    source: str = "zendesk",
    time: str | None = None,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A valid envelope that happened a minute ago (unless `time` says otherwise)."""
    return make_envelope(
        id=id,
        subject=subject,
        type=type,
        source=source,
        time=time or ago(minutes=1),
        data=data,
        extra=extra or None,
    )
