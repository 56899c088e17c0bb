"""The migrations create exactly what the table metadata describes."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage.migrate import migrations_dir
from service.storage.tables import metadata


async def test_schema_matches_metadata(engine: AsyncEngine) -> None:
    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_revisions_are_named_by_date() -> None:
    names = [p.name for p in (migrations_dir() / "versions").glob("*.py")]
    assert names
    for name in names:
        year, month, day = name[:10].split("_")
        assert (len(year), len(month), len(day)) == (4, 2, 2), name
