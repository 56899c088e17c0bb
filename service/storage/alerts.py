"""Alerts: append-only status transitions, handed out in id order (the alert feed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.ledger import Alert
from service.storage.locks import lock_alert_feed


async def insert(conn: AsyncConnection, alerts: Sequence[Alert]) -> list[int]:
    """Write alerts, returning their ids in the order given; ids are handed out under the
    alert-feed lock, held to commit."""
    if not alerts:
        return []
    await lock_alert_feed(conn)
    rows = await conn.execute(
        text(
            """
            INSERT INTO alerts (customer_id, kind, balance, threshold, at, cause_source, cause_id)
            SELECT customer_id, kind, balance, threshold, at, cause_source, cause_id
            FROM unnest(CAST(:customer_id AS text[]), CAST(:kind AS text[]),
                        CAST(:balance AS float8[]), CAST(:threshold AS float8[]),
                        CAST(:at AS timestamptz[]), CAST(:cause_source AS text[]),
                        CAST(:cause_id AS text[])) WITH ORDINALITY
                 AS t(customer_id, kind, balance, threshold, at, cause_source, cause_id, ord)
            ORDER BY ord
            RETURNING alert_id
            """
        ),
        {
            "customer_id": [a.customer_id for a in alerts],
            "kind": [a.kind for a in alerts],
            "balance": [a.balance for a in alerts],
            "threshold": [a.threshold for a in alerts],
            "at": [a.at for a in alerts],
            "cause_source": [a.cause_source for a in alerts],
            "cause_id": [a.cause_id for a in alerts],
        },
    )
    # Identity values follow the ORDER BY of the insert.
    return sorted(r.alert_id for r in rows)


async def after(conn: AsyncConnection, *, after: int, limit: int) -> list[tuple[int, Alert]]:
    """The alert feed, oldest first, from the alert after `after`."""
    return [(a.alert_id, a.alert) for a in await for_sink(conn, after=after, limit=limit)]


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert_id: int
    alert: Alert
    recorded_at: datetime


async def for_sink(conn: AsyncConnection, *, after: int, limit: int) -> list[StoredAlert]:
    """Alerts after `after`, oldest first, with when each was written. A reader that goes on
    from the last id it saw never skips one (ids become visible in id order)."""
    rows = await conn.execute(
        text(
            "SELECT alert_id, customer_id, kind, balance, threshold, at, cause_source, cause_id, "
            "recorded_at FROM alerts WHERE alert_id > :after ORDER BY alert_id LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    # Unpacked by position: a row's attributes cost more than the rest of this (a page is 100).
    return [
        StoredAlert(alert_id, Alert(*alert), recorded_at) for alert_id, *alert, recorded_at in rows
    ]
