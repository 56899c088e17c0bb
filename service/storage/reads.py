"""The read side: every query hits an index on the rows it returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.ledger import Account, Alert
from service.storage.writes import ACCOUNT_COLUMNS, _account, alert_item


async def account(conn: AsyncConnection, customer_id: str) -> Account | None:
    row = (
        await conn.execute(
            text(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE customer_id = :c"),
            {"c": customer_id},
        )
    ).first()
    return _account(row) if row else None


async def entries_until(
    conn: AsyncConnection, customer_id: str, at: datetime
) -> list[tuple[float, datetime]]:
    """(amount, effective_at) of every entry effective at or before `at`, for B(at)."""
    rows = await conn.execute(
        text(
            "SELECT amount, effective_at FROM ledger_entries "
            "WHERE customer_id = :c AND effective_at <= :at"
        ),
        {"c": customer_id, "at": at},
    )
    return [(r.amount, r.effective_at) for r in rows]


@dataclass(frozen=True, slots=True)
class LedgerKey:
    effective_at: datetime
    entry_id: int


async def ledger_page(
    conn: AsyncConnection, customer_id: str, *, limit: int, after: LedgerKey | None
) -> tuple[list[dict[str, Any]], LedgerKey | None]:
    """Entries newest first by (effective_at, entry_id); keyset paging never repeats or skips."""
    where = "customer_id = :c"
    params: dict[str, Any] = {"c": customer_id, "limit": limit + 1}
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
    conn: AsyncConnection, customer_id: str, since: datetime | None
) -> list[tuple[str | None, str, float, float, int]]:
    """(pillar, type, credits, debits, count) for entries effective since `since`."""
    rows = await conn.execute(
        text(
            """
            SELECT pillar, type,
                   coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS credits,
                   coalesce(sum(amount) FILTER (WHERE amount < 0), 0) AS debits,
                   count(*) AS n
            FROM ledger_entries
            WHERE customer_id = :c AND (CAST(:since AS timestamptz) IS NULL
                                        OR effective_at >= :since)
            GROUP BY pillar, type
            """
        ),
        {"c": customer_id, "since": since},
    )
    return [(r.pillar, r.type, r.credits, r.debits, r.n) for r in rows]


async def at_risk_page(
    conn: AsyncConnection,
    *,
    segment: str | None,
    limit: int,
    after: tuple[int, float, str] | None,
) -> tuple[list[Account], tuple[int, float, str] | None]:
    """At-risk accounts, lowest balance first, by the time-invariant rank key."""
    where = "status = 'at_risk'"
    params: dict[str, Any] = {"limit": limit + 1}
    if segment is not None:
        where += " AND segment = :segment"
        params["segment"] = segment
    if after is not None:
        where += " AND (rank_sign, rank_value, customer_id) > (:s, :v, :c)"
        params |= {"s": after[0], "v": after[1], "c": after[2]}
    rows = (
        await conn.execute(
            text(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {where} "
                "ORDER BY rank_sign, rank_value, customer_id LIMIT :limit"
            ),
            params,
        )
    ).all()
    more = len(rows) > limit
    found = [_account(r) for r in rows[:limit]]
    cursor = None
    if more and found:
        last = found[-1]
        cursor = (last.rank[0], last.rank[1], last.customer_id)
    return found, cursor


async def alerts_after(conn: AsyncConnection, *, after: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT alert_id, customer_id, kind, balance, threshold, at, cause_source, cause_id "
            "FROM alerts WHERE alert_id > :after ORDER BY alert_id LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    return [
        alert_item(
            r.alert_id,
            Alert(r.customer_id, r.kind, r.balance, r.threshold, r.at, r.cause_source, r.cause_id),
        )
        for r in rows
    ]


async def account_counts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(text("SELECT status, count(*) AS n FROM accounts GROUP BY status"))
    counts = {"ok": 0, "at_risk": 0}
    counts.update({r.status: r.n for r in rows})
    return counts


async def lowest_at_risk(conn: AsyncConnection, limit: int) -> list[Account]:
    found, _ = await at_risk_page(conn, segment=None, limit=limit, after=None)
    return found


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))


async def outbox_pending(conn: AsyncConnection) -> int:
    value = (
        await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    ).scalar_one()
    return int(value)
