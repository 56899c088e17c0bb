"""Migration 0002: the alerts topic's sink goes on where the outbox relay stopped; downgrading
brings an (empty) outbox back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from service.storage.db import make_engine
from service.storage.migrate import alembic_config, upgrade
from tests.support.db import admin_sql, with_database


@pytest.fixture
def blank_url(server_url: str) -> Iterator[str]:
    name = f"relbank_mig_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_sql(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the rows of the last one."""

    async def go() -> list[Any]:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                rows: list[Any] = []
                for statement in statements:
                    result = await conn.execute(text(statement))
                    rows = list(result) if result.returns_rows else []
                return rows
        finally:
            await engine.dispose()

    return asyncio.run(go())


ALERTS = """
    INSERT INTO alerts (customer_id, kind, balance, threshold, at)
    SELECT 'c' || i, 'at_risk', -20, -15, now() FROM generate_series(1, 3) AS i
"""


def outbox(published: list[bool]) -> str:
    rows = ", ".join(
        f"('relbank.alerts', 'c{i}', '{{\"id\": \"{i}\"}}', {'now()' if done else 'NULL'})"
        for i, done in enumerate(published, start=1)
    )
    return f"INSERT INTO outbox (topic, key, payload, published_at) VALUES {rows}"


def kafka_cursor(url: str) -> list[Any]:
    return [tuple(r) for r in run_sql(url, "SELECT sink, last_alert_id, webhook FROM alert_sinks")]


def test_the_topic_goes_on_where_the_outbox_stopped(blank_url: str) -> None:
    upgrade(blank_url, "0001")
    run_sql(blank_url, ALERTS, outbox([True, False, False]))
    upgrade(blank_url)
    assert kafka_cursor(blank_url) == [("kafka", 1, None)]
    assert run_sql(blank_url, "SELECT to_regclass('outbox') IS NULL")[0][0]
    assert (
        run_sql(blank_url, "SELECT count(*) FROM alerts WHERE recorded_at IS NOT NULL")[0][0] == 3
    )

    # All published: after the newest. Down and up again, so the downgrade is checked too.
    command.downgrade(alembic_config(blank_url), "0001")
    assert run_sql(blank_url, "SELECT count(*) FROM outbox")[0][0] == 0
    run_sql(blank_url, outbox([True, True, True]))
    upgrade(blank_url)
    assert kafka_cursor(blank_url) == [("kafka", 3, None)]

    # No outbox rows at all: no cursor; the relay starts from the first alert.
    command.downgrade(alembic_config(blank_url), "0001")
    upgrade(blank_url)
    assert kafka_cursor(blank_url) == []
