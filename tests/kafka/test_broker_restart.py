"""The broker goes away and comes back empty (the memory-only embedded broker restarted, as in
`relbank dev`): /readyz says so meanwhile, the consumer reconnects by itself, notices that the log
is not the one its stored offsets count in, says so (a WARNING: expected) and reads the new one
from its start. Also when the new log was refilled past the stored offsets before the consumer
came back, and when a topic is deleted and re-created (README): nothing is skipped."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.domain.policy import Policy
from service.kafka.client import ensure_topics
from service.settings import Settings
from tests.kafka.conftest import RestartableBroker, kafka_settings_for
from tests.support.corpus import make_corpus
from tests.support.kafka import encode_mixed, produce_stream, recreate_topic, running_consumer
from tests.support.ledger import assert_ledger_matches, wait_consumed
from tests.support.waiting import PATIENCE, wait_for

# Slow: brokers restarted and topics re-created (left out by `-m "not slow"`).
pytestmark = pytest.mark.slow

CHANGED = "not the one relbank's offsets count in"


def log_changes(topic: str) -> float:
    value: float = metrics.LOG_CHANGED.labels(topic=topic)._value.get()
    return value


async def stored_events(checker: AsyncEngine) -> int:
    async with checker.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())


async def stored_rows(checker: AsyncEngine, group: str) -> int:
    async with checker.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM consumer_offsets WHERE consumer_group = :g"), {"g": group}
        )
        return int(found.scalar_one())


async def wait_stored(checker: AsyncEngine, count: int, *, within: float = PATIENCE) -> None:
    async def done() -> bool:
        return await stored_events(checker) == count

    await wait_for(done, within=within, what=f"{count} events in the store")


def assert_reported_as_expected(caplog: pytest.LogCaptureFixture) -> None:
    """A changed log is expected (a dev restart): a WARNING, never an ERROR of relbank's."""
    consumer = [r for r in caplog.records if r.name == "relbank.consumer"]
    assert any(CHANGED in r.message and r.levelno == logging.WARNING for r in consumer)
    assert not [r.message for r in consumer if r.levelno >= logging.ERROR]


async def test_broker_restarted_empty(
    own_broker: RestartableBroker,
    clean: AsyncEngine,
    engine: AsyncEngine,
    checker: AsyncEngine,
    database_url: str,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = kafka_settings_for(database_url, own_broker.bootstrap)
    await ensure_topics(s, partitions=3)
    before = make_corpus(600, customers=20, seed=61, prefix="before-")
    after = make_corpus(300, customers=20, seed=62, prefix="after-")
    counted = log_changes(s.input_topic)
    caplog.set_level(logging.WARNING, logger="relbank.consumer")
    async with running_consumer(s, engine, default_policy) as ingest:
        await produce_stream(s, encode_mixed(before), per_second=1e9)
        await wait_consumed(checker, s.consumer_group, len(before), within=PATIENCE)

        own_broker.stop()

        async def unreachable() -> bool:
            return "kafka" in ingest.rt.not_ready

        await wait_for(
            unreachable, within=PATIENCE, what="/readyz to report the broker unreachable"
        )
        own_broker.start()
        await ensure_topics(s, partitions=3)
        # The new log starts again at offset 0, far below the offsets PostgreSQL stored.
        await produce_stream(s, encode_mixed(after), per_second=1e9)

        async def reachable() -> bool:
            return "kafka" not in ingest.rt.not_ready

        await wait_for(reachable, within=PATIENCE, what="/readyz to see the broker again")
        await wait_stored(checker, len(before) + len(after))
    await assert_ledger_matches(checker, before + after)
    assert log_changes(s.input_topic) > counted
    assert_reported_as_expected(caplog)


async def consume(
    s: Settings, engine: AsyncEngine, checker: AsyncEngine, policy: Policy, events: list[Any]
) -> None:
    """Produce `events` and apply them with a consumer that stops afterwards."""
    async with running_consumer(s, engine, policy):
        await produce_stream(s, encode_mixed(events), per_second=1e9)
        await wait_consumed(checker, s.consumer_group, len(events), within=PATIENCE)


async def consume_another_log(
    s: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    policy: Policy,
    caplog: pytest.LogCaptureFixture,
    *,
    earlier: list[Any],
    new: list[Any],
) -> None:
    """A consumer starts where the log behind the topic is not the one the stored offsets count
    in and already holds `new`, past those offsets: it reads the whole log, once, and says so
    per partition as something expected."""
    partitions = await stored_rows(checker, s.consumer_group)
    assert partitions > 0
    counted = log_changes(s.input_topic)
    caplog.set_level(logging.WARNING, logger="relbank.consumer")
    async with running_consumer(s, engine, policy):
        await wait_stored(checker, len(earlier) + len(new))
        await wait_consumed(checker, s.consumer_group, len(new), within=PATIENCE)
    await assert_ledger_matches(checker, earlier + new)
    assert log_changes(s.input_topic) - counted == partitions
    assert_reported_as_expected(caplog)


async def test_broker_restarted_and_refilled_past_the_stored_offsets_before_the_consumer(
    own_broker: RestartableBroker,
    clean: AsyncEngine,
    engine: AsyncEngine,
    checker: AsyncEngine,
    database_url: str,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`relbank dev`, 10 events, stopped; `relbank dev --demo` on the same folder: the new broker
    holds thousands of records before the consumer asks for the stored offsets."""
    s = kafka_settings_for(database_url, own_broker.bootstrap)
    await ensure_topics(s, partitions=3)
    first = make_corpus(10, customers=5, seed=63, prefix="first-")
    demo = make_corpus(3600, customers=200, seed=64, prefix="demo-")
    await consume(s, engine, checker, default_policy, first)
    own_broker.stop()
    own_broker.start()
    await ensure_topics(s, partitions=3)
    await produce_stream(s, encode_mixed(demo), per_second=1e9)
    await consume_another_log(s, engine, checker, default_policy, caplog, earlier=first, new=demo)


async def test_topic_deleted_and_recreated_with_new_records(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = kafka_settings
    old = make_corpus(300, customers=30, seed=65, prefix="old-")
    new = make_corpus(900, customers=30, seed=66, prefix="new-")
    await consume(s, engine, checker, default_policy, old)
    await recreate_topic(s, s.input_topic)
    # More records than before: the old offsets point into the middle of the new log.
    await produce_stream(s, encode_mixed(new), per_second=1e9)
    await consume_another_log(s, engine, checker, default_policy, caplog, earlier=old, new=new)
