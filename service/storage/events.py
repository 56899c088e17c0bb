"""The event store: append-only, arrival order in `seq`, unique on (source, id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import Event
from service.domain.ledger import StoredEvent
from service.storage.db import as_dbapi_error, stage

# The staging table a batch is copied into (`db.stage`), in arrival order `n`.
_STAGED = (
    "n int, source text, event_id text, customer_id text, type text, time timestamptz, "
    "effective_at timestamptz, received_at timestamptz, magnitude float8, content_hash bytea, "
    "envelope jsonb"
)


@dataclass(frozen=True, slots=True)
class ExistingEvent:
    content_hash: bytes
    customer_id: str


def as_row(e: Event) -> tuple[Any, ...]:
    """An event as the store keeps it: source, event_id, customer_id, type, time, effective_at,
    received_at, magnitude, content_hash, envelope (as it was validated and hashed)."""
    return (
        e.source,
        e.id,
        e.customer_id,
        e.type,
        e.time,
        e.effective_at,
        e.received_at,
        e.magnitude,
        e.content_hash,
        e.encoded.decode(),
    )


async def insert_events(
    conn: AsyncConnection, events: Sequence[Event], *, path: str
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], ExistingEvent]]:
    """Insert the batch (distinct (source, id) pairs, in arrival order) into the event store.

    Returns the seq of each pair that was new, and for each pair that already existed its stored
    hash and customer, so the caller can tell duplicates from conflicts.
    """
    if not events:
        return {}, {}
    raw = await stage(
        conn,
        "relbank_staged_events",
        _STAGED,
        [(n, *as_row(e)) for n, e in enumerate(events)],
    )
    try:
        rows = await raw.fetch(
            """
            INSERT INTO events (source, event_id, customer_id, type, time, effective_at,
                                received_at, magnitude, content_hash, envelope, path)
            SELECT source, event_id, customer_id, type, time, effective_at, received_at,
                   magnitude, content_hash, envelope, $1
            FROM relbank_staged_events ORDER BY n
            ON CONFLICT (source, event_id) DO NOTHING
            RETURNING seq, source, event_id
            """,
            path,
        )
    except asyncpg.PostgresError as exc:
        raise as_dbapi_error("INSERT events", exc) from exc
    inserted = {(source, event_id): seq for seq, source, event_id in rows}
    missing = [e for e in events if (e.source, e.id) not in inserted]
    existing: dict[tuple[str, str], ExistingEvent] = {}
    if missing:
        found = await conn.execute(
            text(
                """
                SELECT e.source, e.event_id, e.content_hash, e.customer_id
                FROM events e
                JOIN unnest(CAST(:source AS text[]), CAST(:event_id AS text[]))
                     AS k(source, event_id)
                  ON e.source = k.source AND e.event_id = k.event_id
                """
            ),
            {"source": [e.source for e in missing], "event_id": [e.id for e in missing]},
        )
        existing = {
            (r.source, r.event_id): ExistingEvent(bytes(r.content_hash), r.customer_id)
            for r in found
        }
    return inserted, existing


async def event_count(conn: AsyncConnection, *, source: str | None = None) -> int:
    query = "SELECT count(*) FROM events" + (" WHERE source = :s" if source is not None else "")
    return int((await conn.execute(text(query), {"s": source})).scalar_one())


async def events_after(conn: AsyncConnection, after_seq: int, limit: int) -> list[StoredEvent]:
    """The event store in arrival order, a page at a time."""
    rows = await conn.execute(
        text(
            "SELECT seq, source, event_id, type, customer_id, effective_at, magnitude, "
            "envelope -> 'data' AS data FROM events WHERE seq > :after ORDER BY seq LIMIT :n"
        ),
        {"after": after_seq, "n": limit},
    )
    return [
        StoredEvent(
            seq=r.seq,
            source=r.source,
            id=r.event_id,
            type=r.type,
            customer_id=r.customer_id,
            effective_at=r.effective_at,
            data=r.data if isinstance(r.data, dict) else None,
            magnitude=r.magnitude,
        )
        for r in rows
    ]
