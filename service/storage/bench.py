"""SQL of `relbank bench` alone: scratch copies of the tables, the raw COPY limit, and synthetic
accounts for read benchmarks. Nothing of the service calls this."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.storage import ledger

# The tables a batch writes, in the order a batch writes them.
SCRATCH_TABLES = ("events", "ledger_entries", "accounts", "alerts")
EVENT_COLUMNS = (
    "seq",
    "source",
    "event_id",
    "customer_id",
    "type",
    "time",
    "effective_at",
    "received_at",
    "magnitude",
    "content_hash",
    "envelope",
    "path",
)
LEDGER_COLUMNS = ledger.COLUMNS
ACCOUNT_COLUMNS = (
    "customer_id",
    "segment",
    "ref_balance",
    "ref_time",
    "status",
    "status_since",
    "opened_at",
    "last_event_at",
    "entries",
    "next_transition_at",
    "rank_sign",
    "rank_value",
)
_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in ACCOUNT_COLUMNS[1:] if c != "opened_at")


def _schema(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain schema name: {name!r}")
    return name


async def backend_pid(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def create_scratch(conn: AsyncConnection, schema: str) -> None:
    """A schema with empty copies of the written tables: same columns, identities, indexes and
    constraints (the ledger's foreign key to the events included), so writes cost the same."""
    s = _schema(schema)
    await conn.execute(text(f"CREATE SCHEMA {s}"))
    for table in SCRATCH_TABLES:
        await conn.execute(text(f"CREATE TABLE {s}.{table} (LIKE public.{table} INCLUDING ALL)"))
    await conn.execute(
        text(
            f"ALTER TABLE {s}.ledger_entries ADD FOREIGN KEY (event_seq) REFERENCES {s}.events(seq)"
        )
    )


async def drop_scratch(conn: AsyncConnection, schema: str) -> None:
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {_schema(schema)} CASCADE"))


async def scratch_schemas(conn: AsyncConnection) -> list[str]:
    """Scratch schemas left by bench runs that were killed."""
    rows = await conn.execute(
        text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'relbank\\_bench\\_%'")
    )
    return [r.nspname for r in rows]


async def prepare_copy(conn: AsyncConnection) -> None:
    """The per-session staging table the account upserts go through."""
    await conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS bench_accounts "
            "(LIKE public.accounts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
    )


async def copy_batch(
    conn: AsyncConnection,
    schema: str,
    events: Sequence[tuple[Any, ...]],
    entries: Sequence[tuple[Any, ...]],
    accounts: Sequence[tuple[Any, ...]],
) -> None:
    """Write one batch's rows with COPY (the accounts through the staging table and one
    upsert), in the caller's transaction. Rows are in the order of the *_COLUMNS tuples."""
    s = _schema(schema)
    raw: Any = (await conn.get_raw_connection()).driver_connection
    await raw.copy_records_to_table("events", schema_name=s, columns=EVENT_COLUMNS, records=events)
    await raw.copy_records_to_table(
        "ledger_entries", schema_name=s, columns=LEDGER_COLUMNS, records=entries
    )
    await raw.copy_records_to_table("bench_accounts", columns=ACCOUNT_COLUMNS, records=accounts)
    await raw.execute(
        f"INSERT INTO {s}.accounts ({', '.join(ACCOUNT_COLUMNS)}) "
        f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM bench_accounts "
        f"ON CONFLICT (customer_id) DO UPDATE SET {_UPDATE}, updated_at = now()"
    )


async def seed_accounts(conn: AsyncConnection, prefix: str, count: int) -> None:
    """`count` synthetic accounts `<prefix>-<n>` (one in twenty at risk), each with its opening
    ledger entry, and an alert for each at-risk one: a population to read from."""
    params = {"p": prefix, "n": count}
    await conn.execute(
        text(
            """
            INSERT INTO accounts (customer_id, segment, ref_balance, ref_time, status,
                                  status_since, opened_at, last_event_at, entries,
                                  next_transition_at, rank_sign, rank_value)
            SELECT :p || '-' || g, NULL, b, now(),
                   CASE WHEN g % 20 = 0 THEN 'at_risk' ELSE 'ok' END,
                   now(), now() - interval '90 days', now(), 1, NULL, CAST(sign(b) AS smallint), b
            FROM generate_series(1, CAST(:n AS int)) AS g,
                 LATERAL (SELECT CASE WHEN g % 20 = 0 THEN -10 * random() ELSE 50 * random() END
                          AS b OFFSET 0) AS r
            """
        ),
        params,
    )
    await conn.execute(
        text(
            """
            INSERT INTO ledger_entries (generation, customer_id, event_seq, source, event_id,
                                        type, amount, effective_at, policy_version, outcome)
            SELECT (SELECT generation FROM projection_state WHERE id = 1),
                   :p || '-' || g, NULL, 'relbank', 'opened:' || :p || '-' || g,
                   'relbank.account.opened', 0, now() - interval '90 days', 'bench', 'applied'
            FROM generate_series(1, CAST(:n AS int)) AS g
            """
        ),
        params,
    )
    await conn.execute(
        text(
            """
            INSERT INTO alerts (customer_id, kind, balance, threshold, at)
            SELECT :p || '-' || g, 'at_risk', -1, 0, now()
            FROM generate_series(20, CAST(:n AS int), 20) AS g
            """
        ),
        params,
    )
    await conn.execute(text("ANALYZE accounts, ledger_entries, alerts"))
