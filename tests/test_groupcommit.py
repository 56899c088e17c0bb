"""Group commit of HTTP ingest: concurrent requests share a transaction, each is answered with its
own results after the commit, and the outcome is that of the requests serialised."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.application import Relbank
from service.domain.policy import Policy
from tests.support.app import close_client, decoded, open_client, relbank
from tests.support.events import make_event


def grouped(engine: AsyncEngine, policy: Policy, window: float = 0.05) -> Relbank:
    app = relbank(engine, policy)
    app.group_http_commits(window=window, max_events=1000)
    return app


async def transactions(engine: AsyncEngine, source: str) -> int:
    """How many transactions wrote the events of `source`."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(DISTINCT xmin::text) FROM events WHERE source = :s"), {"s": source}
        )
        return int(found.scalar_one())


async def test_concurrent_singles_share_one_transaction(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    app = grouped(clean, default_policy)
    events = decoded([make_event(id=f"e{i}", subject=f"c{i % 7}") for i in range(50)])
    results = await asyncio.gather(*(app.ingest([e], path="http") for e in events))
    assert [r.results[0].id for r in results] == [e.id for e in events]
    assert {r.results[0].outcome for r in results} == {"applied"}
    # Each answer came after the commit: another connection sees every event.
    assert await transactions(clean, "zendesk") == 1
    assert await app.event_count() == 50


async def test_a_pair_in_two_requests_is_applied_once_as_if_serialised(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    app = grouped(clean, default_policy)
    same = make_event(id="dup", subject="c1")
    other = make_event(id="clash", subject="c2")
    changed = make_event(id="clash", subject="c2", type="support.escalated")
    first, second, third, fourth = await asyncio.gather(
        app.ingest(decoded([same]), path="http"),
        app.ingest(decoded([same, other]), path="http"),
        app.ingest(decoded([changed]), path="http"),
        app.ingest(decoded([make_event(id="solo", subject="c3")]), path="http"),
    )
    assert [r.outcome for r in first.results] == ["applied"]
    assert [r.outcome for r in second.results] == ["duplicate", "applied"]
    assert [r.outcome for r in third.results] == ["conflict"]
    assert [r.outcome for r in fourth.results] == ["applied"]
    assert await app.event_count() == 3


async def test_a_failed_shared_transaction_fails_only_the_member_at_fault(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    app = grouped(clean, default_policy)
    good1, bad, good2 = decoded([make_event(id=f"e{i}", subject=f"c{i}") for i in range(3)])
    # Validation stops a NUL; this one gets past it, as a bug would let something through.
    bad = bad._replace(encoded=b'{"x": "\\u0000"}')
    outcomes = await asyncio.gather(
        app.ingest([good1], path="http"),
        app.ingest([bad], path="http"),
        app.ingest([good2], path="http"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], DBAPIError)
    for applied in (outcomes[0], outcomes[2]):
        assert not isinstance(applied, BaseException)
        assert [r.outcome for r in applied.results] == ["applied"]
    assert await app.event_count() == 2


async def test_big_batches_and_zero_window_commit_alone(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    alone = grouped(clean, default_policy, window=0)
    assert alone.http_group is None
    await asyncio.gather(
        *(alone.ingest(decoded([make_event(id=f"a{i}")]), path="http") for i in range(5))
    )
    assert await transactions(clean, "zendesk") == 5
    app = grouped(clean, default_policy)
    assert app.http_group is not None
    app.http_group.max_events = 3
    big = decoded([make_event(id=f"b{i}", source="big") for i in range(3)])
    small = decoded([make_event(id=f"s{i}", source="big") for i in range(2)])
    await asyncio.gather(app.ingest(big, path="http"), app.ingest(small, path="http"))
    assert await transactions(clean, "big") == 2


@pytest.fixture
async def grouped_client(clean: AsyncEngine, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # A wide window, so requests arriving over a busy machine still meet.
    c, lifespan = await open_client(database_url, group_commit_window="200ms")
    yield c
    await close_client(c, lifespan)


async def test_http_singles_share_transactions_and_get_their_own_answers(
    grouped_client: httpx.AsyncClient, clean: AsyncEngine
) -> None:
    bodies = [make_event(id=f"h{i}", subject=f"c{i % 9}") for i in range(64)]
    bodies.append(bodies[0])  # a re-send of the first
    responses = await asyncio.gather(*(grouped_client.post("/v1/events", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [200] * 65
    assert [r.json()["id"] for r in responses] == [b["id"] for b in bodies]
    assert Counter(r.json()["outcome"] for r in responses) == {"applied": 64, "duplicate": 1}
    assert await transactions(clean, "zendesk") < 64
