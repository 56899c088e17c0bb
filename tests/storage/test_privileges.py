"""Least privilege: the service runs as a LOGIN member of `relbank_runtime`, which may append to
the event store, the ledger and the alerts but never change or remove what is there, and
everything relbank does (ingest over HTTP and Kafka, segment changes, sweep, relay, replay, reads)
works as it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.application import Relbank
from service.domain.ledger import Alert
from service.domain.policy import Policy
from service.errors import StartupError
from service.storage.db import Database, make_engine, sqlstate
from service.storage.offsets import Move
from service.storage.tables import metadata
from tests.support.app import close_client, decoded, open_client
from tests.support.db import admin_sql
from tests.support.events import make_event
from tests.support.policy import make_policy

TAMPERING = [
    "UPDATE ledger_entries SET amount = 100",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries",
    "UPDATE events SET magnitude = 0",
    "DELETE FROM events",
    "TRUNCATE events",
    "UPDATE alerts SET kind = 'recovered'",
    "DELETE FROM alerts",
    "TRUNCATE alerts",
    "DELETE FROM accounts",
    "TRUNCATE consumer_offsets",
]


def as_role(url: str, role: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{role}@{rest.partition('@')[2]}"


@asynccontextmanager
async def login_role(server_url: str, database_url: str, *, member_of: str) -> AsyncIterator[str]:
    """A URL of the session's database as a fresh LOGIN role (`member_of`: "IN ROLE x" or "")."""
    role = f"relbank_app_{uuid.uuid4().hex[:8]}"
    await admin_sql(server_url, f"CREATE ROLE {role} LOGIN {member_of}")
    try:
        yield as_role(database_url, role)
    finally:
        await admin_sql(
            server_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        )
        await admin_sql(server_url, f"DROP ROLE {role}")


@pytest.fixture
async def app_url(server_url: str, database_url: str) -> AsyncIterator[str]:
    """As a member of relbank_runtime, the way an operator sets the service up
    (CREATE ROLE relbank_app LOGIN ... IN ROLE relbank_runtime)."""
    async with login_role(server_url, database_url, member_of="IN ROLE relbank_runtime") as url:
        yield url


@pytest.fixture
async def app_engine(app_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(app_url, pool_size=2)
    yield engine
    await engine.dispose()


async def test_the_runtime_role_cannot_change_or_remove_history(
    clean: AsyncEngine, app_engine: AsyncEngine, default_policy: Policy
) -> None:
    app = Relbank(Database(app_engine), default_policy)
    await app.activate_policy()
    await app.ingest(
        decoded([make_event(id="p1", subject="c1", type="promise.broken")] * 2), path="http"
    )
    await app.ingest(
        decoded([make_event(id="p2", subject="c1", type="promise.broken")]), path="http"
    )
    for statement in TAMPERING:
        with pytest.raises(DBAPIError) as refused:
            async with app_engine.begin() as conn:
                await conn.execute(text(statement))
        assert sqlstate(refused.value) == "42501", statement  # insufficient_privilege
        assert "permission denied" in str(refused.value)
    async with clean.connect() as conn:
        found = await conn.execute(
            text("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM alerts)")
        )
        assert tuple(found.one()) == (2, 1)


async def test_everything_relbank_does_works_as_the_runtime_role(
    clean: AsyncEngine, app_engine: AsyncEngine, app_url: str, default_policy: Policy
) -> None:
    app = Relbank(Database(app_engine), default_policy)
    await app.activate_policy()
    # Ingest over HTTP's path: c1 falls below -15 (at risk: an alert).
    broken = [make_event(id=f"b{i}", subject="c1", type="promise.broken") for i in range(2)]
    applied = await app.ingest(decoded(broken), path="http")
    assert [r.outcome for r in applied.results] == ["applied", "applied"]
    # Over Kafka's path, with the partition offsets moved in the same transaction.

    async def nothing_refused(refused: object) -> None:
        return None

    kafka = await app.ingest_kafka(
        decoded([make_event(id="k1", subject="c2")]),
        group="g",
        moves=[Move("t", 0, None, 1, "topic:x")],
        before_commit=nothing_refused,
    )
    assert [r.outcome for r in kafka.results] == ["applied"]
    await app.ingest_kafka(
        decoded([make_event(id="k2", subject="c2")]),
        group="g",
        moves=[Move("t", 0, 1, 2, "topic:x")],
        before_commit=nothing_refused,
    )
    assert (await app.stored_offsets("g", [("t", 0)]))[("t", 0)].next_offset == 2
    await app.change_segment("c2", "enterprise")
    # The relay to the alerts topic moves its cursor past what it published.
    published: list[tuple[int, Alert]] = []

    async def publish(batch: list[tuple[int, Alert]]) -> None:
        published.extend(batch)

    assert await app.sinks.publish_alerts(publish, limit=100) == 1
    assert await app.sinks.publish_alerts(publish, limit=100) == 0
    # A webhook can be registered and removed (its delivery state goes with it).
    await app.sinks.put_webhook(
        "crm", url="http://127.0.0.1:9/hook", secret=None, kinds=["at_risk", "recovered"]
    )
    assert await app.sinks.delete_webhook("crm")
    # Years of decay later c1 has recovered: the sweep settles it.
    raised = await app.sweep(now=datetime.now(UTC) + timedelta(days=3650))
    assert [a.kind for a in raised] == ["recovered"]
    # Replay under a harsher policy writes a new ledger generation and makes it active.
    harsher = make_policy(
        version="harsher",
        moments={
            **default_policy.model_dump(mode="json")["moments"],
            "promise.broken": {"weight": -30, "pillar": "integrity"},
        },
    )
    report = await app.replay(harsher)
    assert (report.events, report.generation) == (5, 2)
    assert app.policy.version == "harsher"
    page = await app.ledger_page("c1", limit=10, after=None)
    assert page is not None
    assert {item["policy_version"] for item in page[0]} == {"harsher"}
    assert sorted(item["amount"] for item in page[0]) == [-30, -30]
    balance = await app.balance_at("c1", datetime.now(UTC))
    assert balance == pytest.approx(-60, rel=1e-3)
    assert await app.drivers("c1", None) == [("integrity", "promise.broken", 0, -60, 2)]

    # And the whole service starts and serves as the role.
    client, lifespan = await open_client(app_url, policy=harsher)
    try:
        posted = await client.post("/v1/events", json=make_event(id="h1", subject="c3"))
        assert posted.status_code == 200, posted.text
        view = await client.get("/v1/customers/c1")
        assert view.status_code == 200
        assert view.json()["policy_version"] == "harsher"
    finally:
        await close_client(client, lifespan)


async def test_a_role_outside_relbank_runtime_is_told_so_at_start_up(
    clean: AsyncEngine, server_url: str, database_url: str
) -> None:
    async with login_role(server_url, database_url, member_of="") as url:
        with pytest.raises(StartupError, match="member of relbank_runtime"):
            await open_client(url)


async def test_the_grants_of_relbank_runtime(clean: AsyncEngine) -> None:
    """Append-only history; everything else may be read, added to and changed; nothing may be
    deleted or truncated; the schema version only read."""
    async with clean.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT t.tablename, p.privilege,
                       has_table_privilege('relbank_runtime', t.tablename, p.privilege) AS granted
                FROM pg_tables t
                CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])
                     AS p(privilege)
                WHERE t.schemaname = 'public'
                """
            )
        )
        granted: dict[str, set[str]] = {}
        for r in rows:
            granted.setdefault(r.tablename, set())
            if r.granted:
                granted[r.tablename].add(r.privilege)
    assert granted["alembic_version"] == {"SELECT"}
    append_only = {"events", "ledger_entries", "alerts"}
    assert append_only < set(metadata.tables)
    for table in metadata.tables:
        expected = {"SELECT", "INSERT"} | (set() if table in append_only else {"UPDATE"})
        expected |= {"DELETE"} if table == "webhooks" else set()
        assert granted[table] == expected, table


async def test_relbank_runtime_may_stage_batches_even_where_public_may_not(
    clean: AsyncEngine,
) -> None:
    """Batches are copied into temporary tables first; the grant is the role's own, so a
    database that revoked TEMPORARY from PUBLIC still lets the service write."""
    async with clean.connect() as conn:
        own = await conn.execute(
            text(
                """
                SELECT EXISTS (
                    SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                    WHERE d.datname = current_database()
                      AND a.grantee = 'relbank_runtime'::regrole
                      AND a.privilege_type = 'TEMPORARY')
                """
            )
        )
        assert own.scalar_one()
