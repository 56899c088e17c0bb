"""Staging tables (`db.stage`): made once a session, and made again when the transaction that
made one rolled back (it took the table along)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.storage.db import Database, stage

TABLE = "relbank_staged_test"
COLUMNS = "n int, name text"


class Refused(Exception):
    pass


async def staged_rows(conn: AsyncConnection) -> int:
    return int((await conn.execute(text(f"SELECT count(*) FROM {TABLE}"))).scalar_one())


async def test_a_staging_table_made_by_a_rolled_back_transaction_is_made_again(
    clean: AsyncEngine, database_url: str
) -> None:
    db = Database.connect(database_url, pool_size=1)  # one session, used again each time
    try:

        async def stage_then_fail(conn: AsyncConnection) -> None:
            await stage(conn, TABLE, COLUMNS, [(1, "a")])
            raise Refused

        with pytest.raises(Refused):
            await db.transaction(stage_then_fail, attempts=1)

        async def stage_two(conn: AsyncConnection) -> int:
            await stage(conn, TABLE, COLUMNS, [(1, "a"), (2, "b")])
            return await staged_rows(conn)

        # The table went with the rollback: this transaction makes it again.
        assert await db.transaction(stage_two) == 2
        # Made by a committed transaction: the session holds it (and each commit empties it).
        assert await db.transaction(stage_two) == 2
    finally:
        await db.dispose()
