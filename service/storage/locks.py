"""Locks, and the order every writer takes them in so concurrent writers cannot deadlock:

  1. consumer offset rows (Kafka path), by (topic, partition) — see `offsets`;
  2. the projection lock: shared by every writer of events, ledger, accounts and alerts, before
     it touches any of them; exclusive by a replay (or a policy activation), which takes nothing
     of 1 or 3 and none of the customer locks;
  3. one transaction-scoped advisory lock per customer, by key;
  4. event store rows (unique (source, id));
  5. the alert-feed lock, last, just before commit.

Every lock here is transaction-scoped: it is released by the commit or rollback.

Apart from that order: a relay holds its sink's row in `alert_sinks` (`sinks.claim`) and takes no
other lock; changing or removing a webhook takes its `webhooks` row, then its sink row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Two-int advisory keys live in a key space apart from the one-bigint customer keys.
_NAMESPACE = 0x52424E4B
_ALERT_FEED = 1
_PROJECTION = 3


def customer_lock_key(customer_id: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "big", signed=True
    )


async def lock_customers(conn: AsyncConnection, customer_ids: Iterable[str]) -> None:
    """Serialise every writer of these accounts until commit, always in ascending key order."""
    keys = sorted({customer_lock_key(c) for c in customer_ids})
    if keys:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )


async def lock_alert_feed(conn: AsyncConnection) -> None:
    """Held to commit while alert ids are handed out, so ids become visible in id order and a
    poller of `after=` never skips one."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _NAMESPACE, "b": _ALERT_FEED}
    )


async def share_projection(conn: AsyncConnection) -> None:
    """Held to commit by every writer: the active generation and policy it reads next cannot
    change under it. An advisory lock rather than a table lock: the runtime role may not take
    table locks stronger than its INSERT gives it."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock_shared(:a, :b)"), {"a": _NAMESPACE, "b": _PROJECTION}
    )


async def own_projection(conn: AsyncConnection) -> None:
    """Hold off every writer (readers go on) while the active generation or policy changes;
    waits for the writers in flight to commit."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _NAMESPACE, "b": _PROJECTION}
    )
