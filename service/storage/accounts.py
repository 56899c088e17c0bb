"""Account projections: one row per customer, the `(ref_balance, ref_time)` pair and its status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.balance import Projection
from service.domain.ledger import Account
from service.storage.db import as_dbapi_error, driver_connection, stage

COLUMNS = (
    "customer_id, segment, ref_balance, ref_time, status, status_since, opened_at, "
    "last_event_at, entries, next_transition_at, rank_sign, rank_value"
)
# The staging table `save` copies a batch into (`db.stage`), in the order of COLUMNS.
_STAGED = (
    "customer_id text, segment text, ref_balance float8, ref_time timestamptz, status text, "
    "status_since timestamptz, opened_at timestamptz, last_event_at timestamptz, entries int, "
    "next_transition_at timestamptz, rank_sign smallint, rank_value float8"
)
# (rank_sign, rank_value, customer_id): the time-invariant "lowest balance first" order.
RankKey = tuple[int, float, str]


def from_row(r: Sequence[Any]) -> Account:
    """An account from a row of COLUMNS."""
    # Unpacked by position (the order of COLUMNS): a batch loads hundreds of accounts, and
    # attribute access on a row costs more than the rest of this function.
    (
        customer_id,
        segment,
        ref_balance,
        ref_time,
        status,
        status_since,
        opened_at,
        last_event_at,
        entries,
        next_transition_at,
        rank_sign,
        rank_value,
    ) = r
    return Account(
        customer_id=customer_id,
        segment=segment,
        projection=Projection(ref_balance, ref_time),
        status=status,
        status_since=status_since,
        opened_at=opened_at,
        last_event_at=last_event_at,
        entries=entries,
        next_transition_at=next_transition_at,
        rank=(rank_sign, rank_value),
    )


async def load(conn: AsyncConnection, customer_ids: Iterable[str]) -> dict[str, Account]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    # On the driver's connection: a batch loads hundreds of accounts, and SQLAlchemy's row
    # objects cost more than the driver's own (measured; issue 8). A join rather than
    # `= ANY($1)`: the driver's prepared statement soon runs a generic plan, made while the table
    # was small, and as a scan filtered by `= ANY` of a parameter it compares every row with
    # every id (64 ids on 6,000 accounts: 4.8 ms, against 1.2 ms for the join).
    raw = await driver_connection(conn)
    try:
        rows = await raw.fetch(
            f"SELECT {COLUMNS} FROM accounts JOIN unnest($1::text[]) AS k(customer_id) "
            "USING (customer_id)",
            ids,
        )
    except asyncpg.PostgresError as exc:
        raise as_dbapi_error("SELECT accounts", exc) from exc
    return {r[0]: from_row(r) for r in rows}


def as_row(a: Account) -> tuple[Any, ...]:
    """An account as a row of COLUMNS."""
    return (
        a.customer_id,
        a.segment,
        a.projection.ref_balance,
        a.projection.ref_time,
        a.status,
        a.status_since,
        a.opened_at,
        a.last_event_at,
        a.entries,
        a.next_transition_at,
        a.rank[0],
        a.rank[1],
    )


async def save(conn: AsyncConnection, accounts: Sequence[Account]) -> None:
    if not accounts:
        return
    raw = await stage(
        conn,
        "relbank_staged_accounts",
        _STAGED,
        [as_row(a) for a in accounts],
    )
    try:
        await raw.execute(
            f"""
            INSERT INTO accounts ({COLUMNS}, updated_at)
            SELECT {COLUMNS}, now() FROM relbank_staged_accounts
            ON CONFLICT (customer_id) DO UPDATE SET
                segment = EXCLUDED.segment, ref_balance = EXCLUDED.ref_balance,
                ref_time = EXCLUDED.ref_time, status = EXCLUDED.status,
                status_since = EXCLUDED.status_since, last_event_at = EXCLUDED.last_event_at,
                entries = EXCLUDED.entries, next_transition_at = EXCLUDED.next_transition_at,
                rank_sign = EXCLUDED.rank_sign, rank_value = EXCLUDED.rank_value,
                updated_at = now()
            """
        )
    except asyncpg.PostgresError as exc:
        raise as_dbapi_error("INSERT accounts", exc) from exc


async def load_all(conn: AsyncConnection) -> dict[str, Account]:
    rows = await conn.execute(text(f"SELECT {COLUMNS} FROM accounts"))
    return {r.customer_id: from_row(r) for r in rows}


async def due(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT customer_id FROM accounts WHERE next_transition_at <= :now "
            "ORDER BY next_transition_at LIMIT :n"
        ),
        {"now": now, "n": limit},
    )
    return [r.customer_id for r in rows]


async def one(conn: AsyncConnection, customer_id: str) -> Account | None:
    row = (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM accounts WHERE customer_id = :c"), {"c": customer_id}
        )
    ).first()
    return from_row(row) if row else None


async def at_risk_page(
    conn: AsyncConnection, *, segment: str | None, limit: int, after: RankKey | None
) -> tuple[list[Account], RankKey | None]:
    """At-risk accounts, lowest balance first, by the time-invariant rank key."""
    where, params = at_risk_filter(segment, after)
    rows = (
        await conn.execute(
            text(
                f"SELECT {COLUMNS} FROM accounts WHERE {where} "
                "ORDER BY rank_sign, rank_value, customer_id LIMIT :limit"
            ),
            params | {"limit": limit + 1},
        )
    ).all()
    return paged([from_row(r) for r in rows], limit)


def at_risk_filter(segment: str | None, after: RankKey | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its parameters) of an at-risk page."""
    where = "status = 'at_risk'"
    params: dict[str, Any] = {}
    if segment is not None:
        where += " AND segment = :segment"
        params["segment"] = segment
    if after is not None:
        where += " AND (rank_sign, rank_value, customer_id) > (:s, :v, :c)"
        params |= {"s": after[0], "v": after[1], "c": after[2]}
    return where, params


def paged(found: list[Account], limit: int) -> tuple[list[Account], RankKey | None]:
    """A page of `limit` from `limit + 1` ranked accounts, and the cursor when there is more."""
    cursor = None
    if len(found) > limit and limit:
        last = found[limit - 1]
        cursor = (last.rank[0], last.rank[1], last.customer_id)
    return found[:limit], cursor


async def counts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(text("SELECT status, count(*) AS n FROM accounts GROUP BY status"))
    found = {"ok": 0, "at_risk": 0}
    found.update({r.status: r.n for r in rows})
    return found
