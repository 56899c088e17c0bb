"""The transactional outbox, read side: rows written with their alerts, published by the relay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Two-int advisory key, in the same key space as the alert-feed lock (see `writes`).
_RELAY_LOCK = (0x52424E4B, 2)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    outbox_id: int
    topic: str
    key: str | None
    payload: Any


async def try_lock_relay(conn: AsyncConnection) -> bool:
    """One relay at a time, until commit: rows of one customer then reach the topic in id order
    even with several instances running a relay."""
    got = await conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
        dict(zip("ab", _RELAY_LOCK, strict=True)),
    )
    return bool(got.scalar_one())


async def pending(conn: AsyncConnection, limit: int) -> list[OutboxRow]:
    """The oldest unpublished rows, locked until commit (rows another transaction holds are
    skipped rather than waited for)."""
    rows = await conn.execute(
        text(
            """
            SELECT outbox_id, topic, key, payload FROM outbox
            WHERE published_at IS NULL
            ORDER BY outbox_id
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
            """
        ),
        {"limit": limit},
    )
    return [OutboxRow(r.outbox_id, r.topic, r.key, r.payload) for r in rows]


async def mark_published(conn: AsyncConnection, outbox_ids: list[int]) -> None:
    if outbox_ids:
        await conn.execute(
            text(
                "UPDATE outbox SET published_at = now() "
                "WHERE outbox_id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": outbox_ids},
        )
