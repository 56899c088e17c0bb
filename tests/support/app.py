"""The service in this process: settings, a Runtime over the session's engine, and an httpx
client on the ASGI app with its lifespan started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service import pipeline, wire
from service.api.app import create_app
from service.application import Relbank
from service.domain.envelope import Event
from service.domain.policy import Policy, load_policy
from service.runtime import Runtime
from service.settings import Settings, load_settings
from service.storage.alerts import after as alerts_after
from service.storage.db import Database


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


def decoded(items: list[dict[str, Any]]) -> list[Event]:
    now = datetime.now(UTC)
    out = [pipeline.decode(i, received_at=now, max_future_skew=timedelta(minutes=5)) for i in items]
    assert all(isinstance(e, Event) for e in out), out
    return [e for e in out if isinstance(e, Event)]


async def apply(
    engine: AsyncEngine, policy: Policy, items: list[dict[str, Any]]
) -> pipeline.Applied:
    return await relbank(engine, policy).ingest(decoded(items), path="http")


def relbank(engine: AsyncEngine, policy: Policy) -> Relbank:
    """The application service over the test's engine."""
    return Relbank(Database(engine), policy)


async def alert_items(engine: AsyncEngine, *, after: int = 0, limit: int = 1000) -> list[Any]:
    """The alert feed as the API shows it."""
    async with engine.connect() as conn:
        found = await alerts_after(conn, after=after, limit=limit)
    return [wire.alert_item(i, a) for i, a in found]
