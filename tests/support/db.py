"""The test database: a server we may create databases on, and tables emptied between tests."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Every table the service writes, children before the tables their foreign keys point at.
TABLE_ORDER = (
    "alert_sinks",
    "webhooks",
    "alerts",
    "ledger_entries",
    "events",
    "accounts",
    "consumer_offsets",
    "projection_state",
    "policies",
)
TABLES = ", ".join(TABLE_ORDER)
SEQUENCES = (
    "alerts_alert_id_seq",
    "events_seq_seq",
    "ledger_entries_entry_id_seq",
    "projection_state_id_seq",
)
# Emptying with DELETE and resetting the sequences is what TRUNCATE ... RESTART IDENTITY does,
# at a fraction of its cost on tables this small (TRUNCATE takes a lock and new files per table).
CLEAN_SQL = "; ".join(
    [
        *(f"DELETE FROM {t}" for t in TABLE_ORDER),
        *(f"ALTER SEQUENCE {s} RESTART" for s in SEQUENCES),
    ]
)
# After a test that wrote tens of thousands of events, DELETE is the slow one (a foreign-key check
# per row over a table of dead rows): past this many events, TRUNCATE.
TRUNCATE_SQL = f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"
TRUNCATE_OVER_EVENTS = 2000


def machine_postgres() -> str | None:
    """The machine's PostgreSQL when it answers on 127.0.0.1:5432 (unless told to embed one)."""
    if os.environ.get("RELBANK_TEST_EMBEDDED") == "1":
        return None
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 5432)) == 0:
            return "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    return None


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def admin_sql(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    """Every table of the service empty, its sequences back at 1, in two round trips (asyncpg
    runs a string of statements as one implicit transaction)."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        many = await driver.fetchval(
            f"SELECT count(*) > {TRUNCATE_OVER_EVENTS} FROM "
            f"(SELECT 1 FROM events LIMIT {TRUNCATE_OVER_EVENTS + 1}) AS e"
        )
        await driver.execute(TRUNCATE_SQL if many else CLEAN_SQL)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()
