"""Start-up: wait for a database that is not there yet; refuse what waiting cannot fix."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.embedded import free_port, start_postgres
from service.errors import StartupError
from service.storage.migrate import upgrade
from tests.support.app import close_client, open_client
from tests.support.db import admin_sql, with_database
from tests.support.events import make_event
from tests.support.policy import make_policy


@pytest.mark.slow
async def test_waits_for_postgres_and_serves_health_meanwhile() -> None:
    with tempfile.TemporaryDirectory(prefix="relbank-startup-") as tmp:
        pgdata = Path(tmp) / "pgdata"
        pg = start_postgres(pgdata)
        url = pg.url
        await asyncio.to_thread(upgrade, url)
        pg.stop()
        client, lifespan = await open_client(url)
        try:
            assert (await client.get("/healthz")).status_code == 200
            waiting = await client.get("/readyz")
            assert waiting.status_code == 503
            assert "policy" in waiting.json()["components"]
            pg = start_postgres(pgdata)
            for _ in range(100):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
            assert (await client.get("/readyz")).status_code == 200
            posted = await client.post("/v1/events", json=make_event(id="w1", subject="c1"))
            assert posted.status_code == 200, posted.text
        finally:
            await close_client(client, lifespan)
            pg.stop()


async def test_an_unreachable_database_is_not_a_crash() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    client, lifespan = await open_client(url)
    try:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
    finally:
        await close_client(client, lifespan)


async def test_an_unmigrated_database_stops_start_up(server_url: str) -> None:
    name = f"relbank_empty_{uuid.uuid4().hex[:8]}"
    await admin_sql(server_url, f'CREATE DATABASE "{name}"')
    try:
        with pytest.raises(StartupError, match="relbank migrate"):
            await open_client(with_database(server_url, name))
    finally:
        await admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_half_life_the_balances_do_not_fit_stops_start_up(
    clean: AsyncEngine, database_url: str
) -> None:
    client, lifespan = await open_client(database_url)
    try:
        assert (await client.post("/v1/events", json=make_event(id="h1"))).status_code == 200
    finally:
        await close_client(client, lifespan)
    with pytest.raises(StartupError, match=r"RELBANK_POLICY.*relbank replay"):
        await open_client(database_url, policy=make_policy(version="slow", half_life_days=365))
