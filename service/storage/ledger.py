"""Ledger entries: append-only, one per booked event (and per opening), newest first on reads.

Every entry belongs to a generation (a replay writes a new one); reads name the generation they
read, the active one of `policies.state` (an older one stays complete, so a reader that read the
state just before a replay flipped it still reads one whole ledger).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.ledger import Booking, Entry
from service.storage.db import as_dbapi_error, driver_connection

# An entry as the ledger endpoint shows it (times still as datetimes).
LedgerItem = dict[str, Any]
# (pillar, type, credits, debits, count)
DriverRow = tuple[str | None, str, float, float, int]


# The columns an entry is written with, in the order `insert` gives them.
COLUMNS = (
    "generation",
    "customer_id",
    "event_seq",
    "source",
    "event_id",
    "type",
    "pillar",
    "amount",
    "effective_at",
    "policy_version",
    "outcome",
    "reason",
)


def as_row(e: Entry, generation: int) -> tuple[Any, ...]:
    """A ledger entry as a row of COLUMNS."""
    return (
        generation,
        e.customer_id,
        e.event_seq,
        e.source,
        e.id,
        e.type,
        e.pillar,
        e.amount,
        e.effective_at,
        e.policy_version,
        e.outcome,
        e.reason,
    )


async def insert(conn: AsyncConnection, booking: Booking, *, generation: int) -> None:
    """Append the booking's entries with COPY (no conflicts to handle; measured faster than an
    INSERT from `unnest`), in the caller's transaction."""
    if not booking.entries:
        return
    raw = await driver_connection(conn)
    records = [as_row(e, generation) for e in booking.entries]
    try:
        await raw.copy_records_to_table("ledger_entries", columns=COLUMNS, records=records)
    except asyncpg.PostgresError as exc:
        raise as_dbapi_error("COPY ledger_entries", exc) from exc


async def entries_until(
    conn: AsyncConnection, customer_id: str, at: datetime, *, generation: int
) -> list[tuple[float, datetime]]:
    """(amount, effective_at) of every entry effective at or before `at`, for B(at)."""
    rows = await conn.execute(
        text(
            "SELECT amount, effective_at FROM ledger_entries "
            "WHERE customer_id = :c AND generation = :g AND effective_at <= :at"
        ),
        {"c": customer_id, "g": generation, "at": at},
    )
    return [(r.amount, r.effective_at) for r in rows]


async def opened_and_entries_until(
    conn: AsyncConnection, customer_id: str, at: datetime, *, generation: int
) -> tuple[datetime, list[tuple[float, datetime]]] | None:
    """The account's opened_at and the (amount, effective_at) of its entries effective at or
    before `at`, oldest first, from one consistent snapshot; None if the account was never seen."""
    rows = (
        await conn.execute(
            text(
                "SELECT a.opened_at, e.amount, e.effective_at FROM accounts a "
                "LEFT JOIN ledger_entries e ON e.customer_id = a.customer_id "
                "AND e.generation = :g AND e.effective_at <= :at "
                "WHERE a.customer_id = :c ORDER BY e.effective_at"
            ),
            {"c": customer_id, "g": generation, "at": at},
        )
    ).all()
    if not rows:
        return None
    return rows[0].opened_at, [(r.amount, r.effective_at) for r in rows if r.amount is not None]


@dataclass(frozen=True, slots=True)
class LedgerKey:
    effective_at: datetime
    entry_id: int


async def page(
    conn: AsyncConnection,
    customer_id: str,
    *,
    limit: int,
    after: LedgerKey | None,
    generation: int,
) -> tuple[list[LedgerItem], LedgerKey | None]:
    """Entries newest first by (effective_at, entry_id); keyset paging never repeats or skips
    (within one generation)."""
    where = "customer_id = :c AND generation = :g"
    params: dict[str, Any] = {"c": customer_id, "g": generation, "limit": limit + 1}
    if after is not None:
        where += " AND (effective_at, entry_id) < (:at, :id)"
        params |= {"at": after.effective_at, "id": after.entry_id}
    rows = (
        await conn.execute(
            text(
                "SELECT entry_id, source, event_id, type, pillar, amount, effective_at, "
                "recorded_at, policy_version, outcome, reason FROM ledger_entries "
                f"WHERE {where} ORDER BY effective_at DESC, entry_id DESC LIMIT :limit"
            ),
            params,
        )
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "source": r.source,
            "id": r.event_id,
            "type": r.type,
            "pillar": r.pillar,
            "amount": r.amount,
            "effective_at": r.effective_at,
            "recorded_at": r.recorded_at,
            "policy_version": r.policy_version,
            "outcome": r.outcome,
            "reason": r.reason,
        }
        for r in rows
    ]
    last = LedgerKey(rows[-1].effective_at, rows[-1].entry_id) if more and rows else None
    return items, last


async def drivers(
    conn: AsyncConnection, customer_id: str, since: datetime | None, *, generation: int
) -> list[DriverRow]:
    """(pillar, type, credits, debits, count) for entries effective since `since`."""
    rows = await conn.execute(
        text(
            """
            SELECT pillar, type,
                   coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS credits,
                   coalesce(sum(amount) FILTER (WHERE amount < 0), 0) AS debits,
                   count(*) AS n
            FROM ledger_entries
            WHERE customer_id = :c AND generation = :g
              AND (CAST(:since AS timestamptz) IS NULL OR effective_at >= :since)
            GROUP BY pillar, type
            """
        ),
        {"c": customer_id, "g": generation, "since": since},
    )
    return [(r.pillar, r.type, r.credits, r.debits, r.n) for r in rows]
