"""One consumer in this process: zombie batches, lost broker data, a hung batch, a database that
drops its connections, dead letters and the helpers around them."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.domain.policy import Policy
from service.kafka.client import produce_events
from service.settings import Settings
from service.storage.locks import customer_lock_key
from tests.support.corpus import make_corpus
from tests.support.kafka import Stream, encode_mixed, produce_stream, running_consumer
from tests.support.ledger import applied_offsets, assert_ledger_matches, wait_consumed
from tests.support.waiting import PATIENCE, SLOW_TEST_TIMEOUT, wait_for

# Each waits on a real consumer group or a relay's poll loop: the full run only.
pytestmark = pytest.mark.slow


async def _ends(placed: list[tuple[int, int]]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


async def test_a_batch_whose_stored_offset_moved_on_is_rolled_back(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = kafka_settings
    first = make_corpus(60, customers=5, seed=31, prefix="first-")
    stale = make_corpus(60, customers=5, seed=32, prefix="stale-")
    after = make_corpus(60, customers=5, seed=33, prefix="after-")
    caplog.set_level(logging.WARNING, logger="relbank.consumer")
    placed = await produce_stream(s, encode_mixed(first), per_second=1e9)
    async with running_consumer(s, engine, default_policy) as ingest:
        await wait_consumed(checker, s.consumer_group, len(first), within=PATIENCE)
        # The instance is frozen (it cannot take its lock) while it fetches the next records.
        async with ingest.lock:
            placed += await produce_stream(s, encode_mixed(stale), per_second=1e9)
            ends = await _ends(placed)

            async def fetched() -> bool:
                return all(
                    (ingest.consumer.highwater(TopicPartition(s.input_topic, p)) or 0) >= end
                    for p, end in ends.items()
                )

            await wait_for(fetched, within=PATIENCE, what="the stale records to be fetched")
            # Meanwhile another owner of the partitions moved their stored offsets past them.
            async with checker.begin() as conn:
                for partition, end in ends.items():
                    await conn.execute(
                        text(
                            "UPDATE consumer_offsets SET next_offset = :end "
                            "WHERE consumer_group = :g AND topic = :t AND partition = :p"
                        ),
                        {"end": end, "g": s.consumer_group, "t": s.input_topic, "p": partition},
                    )
            # Whenever its poll hands it these records, their batch names the old offsets.

        async def rolled_back() -> bool:
            return any("batch rolled back, not applied" in r.message for r in caplog.records)

        await wait_for(rolled_back, within=PATIENCE, what="the stale batch to be rolled back")
        # It goes on from the stored offsets, as a sound consumer.
        await produce_stream(s, encode_mixed(after), per_second=1e9)
        await wait_consumed(checker, s.consumer_group, 180, within=PATIENCE)
    await assert_ledger_matches(checker, first + after)


@pytest.mark.slow
async def test_broker_that_lost_data_is_reported_and_read_again_from_the_start(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = kafka_settings
    # PostgreSQL remembers offsets from a log the broker no longer has (a restarted memory broker).
    async with checker.begin() as conn:
        for partition in range(3):
            await conn.execute(
                text(
                    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
                    "VALUES (:g, :t, :p, 5000)"
                ),
                {"g": s.consumer_group, "t": s.input_topic, "p": partition},
            )
    counted = metrics.OFFSET_OUT_OF_RANGE.labels(topic=s.input_topic)._value.get()
    events = make_corpus(90, customers=9, seed=34)
    caplog.set_level(logging.ERROR, logger="relbank.consumer")
    placed = await produce_stream(s, encode_mixed(events), per_second=1e9)
    ends = await _ends(placed)
    async with running_consumer(s, engine, default_policy):

        async def caught_up() -> bool:
            async with checker.connect() as conn:
                rows = await conn.execute(
                    text("SELECT partition, next_offset FROM consumer_offsets WHERE topic = :t"),
                    {"t": s.input_topic},
                )
                return {r.partition: r.next_offset for r in rows} == ends

        await wait_for(caught_up, within=PATIENCE, what="the new log to be read from its start")
    await assert_ledger_matches(checker, events)
    assert metrics.OFFSET_OUT_OF_RANGE.labels(topic=s.input_topic)._value.get() - counted == 3
    lost = [r for r in caplog.records if "OFFSET OUT OF RANGE" in r.message]
    assert len(lost) == 3
    assert all(r.levelno == logging.ERROR for r in lost)


async def test_a_hung_batch_makes_the_consumer_not_ready_until_it_moves_again(
    kafka_settings: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = kafka_settings.model_copy(update={"consumer_stuck_seconds": 1.5})
    events = make_corpus(40, customers=1, seed=35)
    customer = events[0]["subject"]
    async with checker.connect() as blocker:
        # Another writer holds the customer's lock: the consumer's batch waits for it.
        await blocker.execute(
            text("SELECT pg_advisory_lock(:k)"), {"k": customer_lock_key(customer)}
        )
        await blocker.commit()
        async with running_consumer(s, engine, default_policy) as ingest:
            await produce_events(s, events)

            async def stuck() -> bool:
                return "no progress" in ingest.rt.not_ready.get("consumer", "")

            await wait_for(stuck, within=PATIENCE, what="/readyz to report the stuck consumer")
            lag = sum(
                metrics.CONSUMER_LAG.labels(topic=s.input_topic, partition=str(p))._value.get()
                for p in range(3)
            )
            assert lag == len(events)
            assert time.time() - metrics.CONSUMER_LAST_PROGRESS._value.get() > 1.5
            await blocker.execute(
                text("SELECT pg_advisory_unlock(:k)"), {"k": customer_lock_key(customer)}
            )
            await blocker.commit()
            await wait_consumed(checker, s.consumer_group, len(events), within=PATIENCE)

            async def ready() -> bool:
                return "consumer" not in ingest.rt.not_ready

            await wait_for(ready, within=PATIENCE, what="the consumer to be ready again")
    await assert_ledger_matches(checker, events)


# Long on a busy machine: the stream goes on until the scenario is done.
@pytest.mark.slow
@pytest.mark.timeout(SLOW_TEST_TIMEOUT)
async def test_database_connections_killed_mid_batch_and_the_consumer_recovers_by_itself(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = kafka_settings
    # A kill is absorbed one of two ways, both fine: the transaction is tried again at once
    # (the connection broke before the commit: relbank.database, INFO), or the batch fails and
    # the consumer backs off and re-reads its offsets (relbank.consumer, ERROR).
    caplog.set_level(logging.INFO, logger="relbank")
    rng = random.Random(36)
    # Streams on until enough connections were killed under the consumer, however long that
    # takes on this machine.
    stream = Stream(s, per_second=900, seed=36, customers=200)
    killed = 0
    not_ready_seen = False

    def failures() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if (r.name == "relbank.consumer" and "failed" in r.message)
            or "connection lost before the commit" in r.message
        ]

    try:
        async with running_consumer(s, engine, default_policy) as ingest:
            stream.start()
            deadline = time.monotonic() + PATIENCE
            while killed <= 10 or not failures():
                assert time.monotonic() < deadline, (
                    f"{killed} connections killed, {len(failures())} failures logged"
                )
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                async with checker.connect() as conn:
                    killed += len(
                        (
                            await conn.execute(
                                text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = 'relbank' "
                                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                                )
                            )
                        ).all()
                    )
                not_ready_seen = not_ready_seen or "consumer" in ingest.rt.not_ready
            await stream.stop()
            await wait_consumed(checker, s.consumer_group, len(stream.records), within=PATIENCE)

            async def ready() -> bool:
                return "consumer" not in ingest.rt.not_ready

            await wait_for(ready, within=PATIENCE, what="the consumer to be ready again")
    finally:
        stream.cancel()
    assert not_ready_seen or failures()
    await assert_ledger_matches(checker, stream.booked)
    assert await applied_offsets(checker, s.consumer_group) == len(stream.records)
