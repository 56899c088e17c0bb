"""The next records are fetched and decoded while a batch is applied (`service.kafka.prefetch`):
nothing of them is applied or committed before their turn, and whatever moves the positions
meanwhile (a stale batch, a rebalance) throws them away, unapplied, to be fetched again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.domain.policy import Policy
from service.embedded import EmbeddedBroker
from service.kafka.client import ensure_topics
from service.kafka.consumer import KafkaIngest
from service.settings import Settings
from tests.kafka.conftest import kafka_settings_for
from tests.support.corpus import make_corpus
from tests.support.kafka import encode_mixed, produce_stream, running_consumer
from tests.support.ledger import applied_offsets, assert_ledger_matches, wait_consumed
from tests.support.waiting import PATIENCE, wait_for

# Each waits on a real consumer group or a relay's poll loop: the full run only.
pytestmark = pytest.mark.slow

PARTITIONS = 3


@pytest.fixture
async def small_batches(clean: AsyncEngine, database_url: str, broker: EmbeddedBroker) -> Settings:
    """Settings over empty tables with batches of 20 records, so a stream is several of them."""
    s = kafka_settings_for(database_url, broker.bootstrap, consumer_max_records=20)
    await ensure_topics(s, partitions=PARTITIONS)
    return s


@asynccontextmanager
async def _offsets_held(
    checker: AsyncEngine, s: Settings
) -> AsyncIterator[tuple[AsyncConnection, Callable[[], Awaitable[None]]]]:
    """Stored offsets 0 for every partition, their rows locked by a transaction of the test: a
    batch's transaction waits at its first statement (the compare-and-set) until the block ends
    or the test calls the release function it is given."""
    async with checker.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
                "SELECT :g, :t, p, 0 FROM generate_series(0, :n - 1) AS p"
            ),
            {"g": s.consumer_group, "t": s.input_topic, "n": PARTITIONS},
        )
    async with checker.connect() as conn:
        holding = await conn.begin()
        await conn.execute(
            text("SELECT 1 FROM consumer_offsets WHERE consumer_group = :g FOR UPDATE"),
            {"g": s.consumer_group},
        )
        try:
            yield conn, holding.commit
        finally:
            if holding.is_active:
                await holding.commit()


async def _wait_fetched_ahead(ingest: KafkaIngest) -> None:
    async def check() -> bool:
        return ingest.prefetch.waiting() > 0

    await wait_for(
        check, within=PATIENCE, what="records to be fetched ahead of the batch in flight"
    )


async def _stored_events(checker: AsyncEngine) -> int:
    async with checker.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())


async def test_records_fetched_ahead_wait_for_their_turn(
    small_batches: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = small_batches
    events = make_corpus(120, customers=12, seed=41)
    await produce_stream(s, encode_mixed(events), per_second=1e9)
    async with running_consumer(s, engine, default_policy) as ingest:
        async with _offsets_held(checker, s):
            # The first batch waits in its transaction; the next records are fetched meanwhile.
            await _wait_fetched_ahead(ingest)
            # Neither batch is applied, nor has moved an offset.
            assert await _stored_events(checker) == 0
            assert await applied_offsets(checker, s.consumer_group) == 0
        await wait_consumed(checker, s.consumer_group, len(events), within=PATIENCE)
        assert ingest.prefetch.discarded == 0
    await assert_ledger_matches(checker, events)


async def test_records_fetched_ahead_of_a_stale_batch_are_dropped(
    small_batches: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = small_batches
    first = make_corpus(90, customers=9, seed=42, prefix="first-")
    after = make_corpus(60, customers=9, seed=43, prefix="after-")
    placed = await produce_stream(s, encode_mixed(first), per_second=1e9)
    ends: dict[int, int] = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    async with running_consumer(s, engine, default_policy) as ingest:
        async with _offsets_held(checker, s) as (conn, _):
            await _wait_fetched_ahead(ingest)
            # Another owner of the partitions applied all of `first` meanwhile.
            for partition, end in ends.items():
                await conn.execute(
                    text(
                        "UPDATE consumer_offsets SET next_offset = :end "
                        "WHERE consumer_group = :g AND topic = :t AND partition = :p"
                    ),
                    {"end": end, "g": s.consumer_group, "t": s.input_topic, "p": partition},
                )
        # The batch in flight rolls back; what was fetched ahead of it goes too, unapplied.
        await produce_stream(s, encode_mixed(after), per_second=1e9)
        await wait_consumed(checker, s.consumer_group, len(first) + len(after), within=PATIENCE)
        assert ingest.prefetch.discarded >= 1
    # Nothing of `first` (applied "elsewhere", as far as this instance can tell) came through.
    await assert_ledger_matches(checker, after)


async def test_a_rebalance_drops_the_records_fetched_ahead(
    small_batches: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = small_batches
    events = make_corpus(150, customers=15, seed=44)
    await produce_stream(s, encode_mixed(events), per_second=1e9)
    async with running_consumer(s, engine, default_policy) as first:
        revoking: list[set[TopicPartition]] = []
        revoked = first.revoked

        async def noting(tps: set[TopicPartition]) -> None:
            revoking.append(tps)
            await revoked(tps)

        first.revoked = noting  # type: ignore[method-assign,assignment]
        async with _offsets_held(checker, s) as (_, release):
            await _wait_fetched_ahead(first)
            # A second instance joins: the first must give its partitions up, and waits for
            # the batch in flight (it holds the consumer's lock) to do so.
            async with running_consumer(s, engine, default_policy):

                async def revocation_begun() -> bool:
                    return bool(revoking)

                await wait_for(revocation_begun, within=PATIENCE, what="the rebalance")
                await release()
                await wait_consumed(checker, s.consumer_group, len(events), within=PATIENCE)
        assert first.prefetch.discarded >= 1
    await assert_ledger_matches(checker, events)
