"""The database refusing or dropping connections (issue 7, item 3): a write that never reached its
commit is retried, anything else is a 503 problem with Retry-After on a connection that stays
usable; never a plain-text 500, never a reset socket, no event lost or doubled."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.api.app import create_app
from service.domain.policy import load_policy
from service.embedded import EmbeddedPostgres
from tests.support.app import make_settings
from tests.support.events import make_event
from tests.support.http import PROBLEM_JSON
from tests.support.live import Answer, RawConnection, relbank_serve, serving

# Slow: PostgreSQL refusing and killing connections under real servers (not in `-m "not slow"`).
pytestmark = pytest.mark.slow

JSON = [("content-type", "application/json")]
# What a driver error would bring into a readiness answer.
LEAKS = ("Errno", "asyncpg", "Error", "Connect call", "SELECT", "pgdata", "socket")


def assert_unavailable(answer: Answer) -> None:
    assert answer.status == 503, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    assert int(answer.headers["retry-after"]) > 0
    assert answer.headers.get("connection") != "close"


async def test_a_database_refusing_connections_is_a_503_on_a_connection_that_stays_usable(
    own_postgres: EmbeddedPostgres,
) -> None:
    settings = make_settings(own_postgres.url)
    app = create_app(settings, load_policy())
    async with serving(app, settings) as port:
        connection = await RawConnection.open(port)
        try:
            first = orjson.dumps(make_event(id="d1", subject="c1"))
            assert (
                await connection.request("POST", "/v1/events", body=first, headers=JSON)
            ).status == 200

            await asyncio.to_thread(own_postgres.server.stop)

            second = orjson.dumps(make_event(id="d2", subject="c1"))
            segment = orjson.dumps({"segment": "smb"})
            for method, path, body in (
                ("POST", "/v1/events", second),
                ("POST", "/v1/events", b"[" + second + b"]"),
                ("PUT", "/v1/customers/c1", segment),
                ("GET", "/v1/customers/c1", b""),
                ("GET", "/v1/customers/c1/balance", b""),
                ("GET", "/v1/customers/c1/ledger", b""),
                ("GET", "/v1/customers/c1/drivers", b""),
                ("GET", "/v1/at-risk", b""),
                ("GET", "/v1/alerts", b""),
            ):
                # One connection throughout: each answer leaves it usable.
                answer = await connection.request(method, path, body=body, headers=JSON)
                assert_unavailable(answer)

            ready = await connection.request("GET", "/readyz")
            assert ready.status == 503
            assert ready.json()["components"]["database"] == "PostgreSQL cannot be reached"
            for leak in LEAKS:
                assert leak not in ready.body.decode(), ready.body
        finally:
            connection.close()

        await asyncio.to_thread(own_postgres.server.start)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "never ready again"
                await asyncio.sleep(0.2)
            response = await http.post("/v1/events", json=make_event(id="d2", subject="c1"))
            assert response.json()["outcome"] == "applied"
            assert (await http.get("/v1/customers/c1")).json()["entries"] == 2


WORKERS = 6
# Often enough to hit transactions in flight, rarely enough that most get through; a bounded
# number of rounds, so that the load ends even on a machine too slow to finish between kills.
KILL_PAUSE = (0.1, 0.6)
KILL_ROUNDS = 60
BATCHES = 15
PER_BATCH = 20


def batch_of(worker: int, n: int) -> list[dict[str, Any]]:
    return [
        make_event(id=f"w{worker}-b{n}-{i}", subject=f"c{(worker * 7 + i) % 40}")
        for i in range(PER_BATCH)
    ]


async def test_connections_killed_under_load_lose_and_double_nothing(
    clean: AsyncEngine, database_url: str
) -> None:
    killer_engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    statuses: list[int] = []
    outcomes: dict[str, str] = {}
    done = asyncio.Event()
    killed = 0

    async def kill() -> None:
        """Terminate every relbank connection to this database, again and again."""
        nonlocal killed
        async with killer_engine.connect() as conn:
            for _ in range(KILL_ROUNDS):
                if done.is_set():
                    return
                rows = await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = 'relbank' "
                        "AND pid <> pg_backend_pid()"
                    )
                )
                killed += sum(1 for (ok,) in rows if ok)
                await asyncio.sleep(random.uniform(*KILL_PAUSE))

    async def post_all(worker: int, http: httpx.AsyncClient) -> None:
        for n in range(BATCHES):
            batch = batch_of(worker, n)
            while True:  # a 503 may be tried again: events deduplicate
                response = await http.post("/v1/events", json=batch)
                statuses.append(response.status_code)
                if response.status_code != 503:
                    break
                assert response.headers["content-type"].startswith(PROBLEM_JSON)
                assert int(response.headers["retry-after"]) > 0
            assert response.status_code == 200, response.text
            for event, result in zip(batch, response.json()["results"], strict=True):
                outcomes[event["id"]] = result["outcome"]

    try:
        async with relbank_serve(
            RELBANK_DATABASE_URL=database_url, RELBANK_AUTH="disabled"
        ) as served:
            killer = asyncio.create_task(kill())
            clients = [httpx.AsyncClient(base_url=served.url, timeout=60) for _ in range(WORKERS)]
            try:
                # A reset socket would raise here (httpx.RemoteProtocolError, ReadError).
                await asyncio.gather(*(post_all(w, c) for w, c in enumerate(clients)))
            finally:
                done.set()
                await killer
                for c in clients:
                    await c.aclose()
    finally:
        await killer_engine.dispose()

    total = WORKERS * BATCHES * PER_BATCH
    assert killed > 0, "no connection was ever terminated: the test proved nothing"
    # Kills hit transactions in flight: retried inside, or answered 503 and retried by the client.
    assert "trying again" in served.log or 503 in statuses, served.log[-3000:]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert len(outcomes) == total
    assert set(outcomes.values()) <= {"applied", "duplicate"}, set(outcomes.values())
    assert "Exception in ASGI application" not in served.log, served.log[-3000:]
    async with clean.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
        entries = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
        per_account = (await conn.execute(text("SELECT sum(entries) FROM accounts"))).scalar_one()
    assert events == total
    assert entries == total
    assert per_account == total
