"""Envelopes for every suite: a valid CloudEvent with anything replaced, removed or added."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any


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
