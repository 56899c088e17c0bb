"""PostgreSQL restarted under a consumer process: /readyz says so while it is away, and the
consumer recovers by itself with nothing lost and nothing applied twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.embedded import EmbeddedBroker, EmbeddedPostgres
from service.kafka.client import ensure_topics
from tests.kafka.conftest import kafka_settings_for
from tests.support.corpus import make_corpus
from tests.support.kafka import encode_mixed, produce_stream
from tests.support.ledger import (
    applied_offsets,
    assert_ledger_matches,
    checker_engine,
    wait_consumed,
)
from tests.support.processes import ConsumerProcess
from tests.support.waiting import wait_for

# Slow: PostgreSQL restarted under a running consumer (left out by `-m "not slow"`).
pytestmark = pytest.mark.slow


async def test_postgres_restarted_during_the_stream(
    own_postgres: EmbeddedPostgres, broker: EmbeddedBroker, logs: Path
) -> None:
    s = kafka_settings_for(own_postgres.url, broker.bootstrap)
    await ensure_topics(s, partitions=3)
    events = make_corpus(9000, customers=200, seed=41)
    records = encode_mixed(events)
    checker: AsyncEngine = checker_engine(own_postgres.url)
    consumer = ConsumerProcess(s, logs, "consumer")
    try:
        consumer.start()
        stream = asyncio.create_task(produce_stream(s, records, per_second=600))

        async def consuming() -> bool:
            return await applied_offsets(checker, s.consumer_group) > 1000

        await wait_for(consuming, within=60, what="the consumer to make progress")
        await checker.dispose()
        await asyncio.to_thread(own_postgres.server.stop)

        async def not_ready() -> bool:
            try:
                status, body = await consumer.readyz()
            except Exception:
                return False
            return status == 503 and "database" in body.get("components", {})

        await wait_for(not_ready, within=20, what="/readyz to say 503 while PostgreSQL is away")
        await asyncio.sleep(3)
        await asyncio.to_thread(own_postgres.server.start)
        await stream
        await wait_consumed(checker, s.consumer_group, len(records), within=90)

        async def ready() -> bool:
            status, _ = await consumer.readyz()
            return status == 200

        await wait_for(ready, within=30, what="/readyz to say 200 again")
        consumer.stop()
        assert "consumer: recovered" in consumer.log()
        await assert_ledger_matches(checker, events)
    finally:
        consumer.kill()
        await checker.dispose()
