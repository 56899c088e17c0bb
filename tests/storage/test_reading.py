"""Reads run in autocommit: no BEGIN and ROLLBACK around each one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.db import Database


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
