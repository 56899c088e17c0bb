"""The migrations create exactly what the table metadata describes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.domain.envelope import content_hash
from service.storage.migrate import migrations_dir, upgrade
from service.storage.tables import metadata
from tests.support.db import admin_sql, with_database


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


async def test_stored_hashes_are_recomputed_by_meaning(server_url: str) -> None:
    """An event stored under the byte-comparing hash (here: a stale hash) gets the hash by
    meaning, so sending it again with `+00:00` for `Z` is a duplicate, not a conflict."""
    name = f"relbank_mig_{uuid.uuid4().hex[:8]}"
    await admin_sql(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        await asyncio.to_thread(upgrade, url, "0001")
        envelope = {
            "specversion": "1.0",
            "id": "m1",
            "source": "crm",
            "type": "renewal.signed",
            "subject": "acme",
            "time": "2026-01-01T00:00:00+00:00",
            "data": {"magnitude": 1.0},
        }
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO events (source, event_id, customer_id, type, time, "
                        "effective_at, received_at, magnitude, content_hash, envelope, path) "
                        "VALUES ('crm', 'm1', 'acme', 'renewal.signed', now(), now(), now(), 1, "
                        "'\\x00', CAST(:e AS jsonb), 'http')"
                    ),
                    {"e": orjson.dumps(envelope).decode()},
                )
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as conn:
                stored = (await conn.execute(text("SELECT content_hash FROM events"))).scalar_one()
        finally:
            await engine.dispose()
        resent = dict(envelope, time="2026-01-01T00:00:00Z", data={"magnitude": 1})
        assert bytes(stored) == content_hash(resent)
    finally:
        await admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
