"""Reads run in autocommit: no BEGIN and ROLLBACK around each one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.db import Database, connection_lost, make_engine

LOST = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


async def test_a_read_runs_outside_a_transaction(engine: AsyncEngine) -> None:
    async with Database(engine).reading() as conn:
        assert (await conn.execute(text("SELECT 41 + 1"))).scalar_one() == 42
        raw: Any = (await conn.get_raw_connection()).driver_connection
        assert not raw.is_in_transaction()
    # The pooled connection is back to transactions for the writers.
    async with engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw.is_in_transaction()


async def test_a_driver_connection_the_server_dropped_is_not_handed_out_again(
    engine: AsyncEngine, database_url: str
) -> None:
    db = Database(make_engine(database_url, pool_size=1))
    try:
        async with db.driver() as driver:
            pid = await driver.fetchval("SELECT pg_backend_pid()")
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
            gone = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
            deadline = time.monotonic() + 30
            while not (await admin.execute(gone, {"pid": pid})).scalar_one():
                assert time.monotonic() < deadline, "the backend did not exit"
                await admin.rollback()  # a new snapshot of pg_stat_activity
                await asyncio.sleep(0.05)
        # Which error the driver raises depends on when it notices.
        with pytest.raises(LOST) as lost:
            async with db.driver() as driver:
                await driver.fetchval("SELECT 1")
        assert connection_lost(lost.value), repr(lost.value)
        # The next read gets a new connection, not the dead one back from the pool.
        async with db.driver() as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await db.dispose()
