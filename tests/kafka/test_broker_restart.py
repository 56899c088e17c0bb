"""The broker goes away and comes back empty (the memory-only embedded broker restarted, as in
`relbank dev`): /readyz says so meanwhile, the consumer reconnects by itself, reports the lost
log loudly and reads the new one from its start."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.domain.policy import Policy
from service.embedded import EmbeddedBroker, free_port, start_broker
from service.kafka.client import ensure_topics
from tests.kafka.conftest import kafka_settings_for
from tests.kafka.helpers import (
    assert_ledger_matches,
    encode_mixed,
    make_corpus,
    produce_stream,
    running_consumer,
    wait_consumed,
    wait_for,
)


class Broker:
    """Tansu on a fixed port, to stop and start again at the same address."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.running: EmbeddedBroker | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.running = start_broker(self.log, port=self.port)
        assert self.running.bootstrap == self.bootstrap, "the port was taken meanwhile"

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker.log")
    broker.start()
    yield broker
    broker.stop()


async def test_broker_restarted_empty(
    own_broker: Broker,
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
    counted = metrics.OFFSET_OUT_OF_RANGE.labels(topic=s.input_topic)._value.get()
    caplog.set_level(logging.ERROR, logger="relbank.consumer")
    async with running_consumer(s, engine, default_policy) as ingest:
        await produce_stream(s, encode_mixed(before), per_second=1e9)
        await wait_consumed(checker, s.consumer_group, len(before), within=30)

        own_broker.stop()

        async def unreachable() -> bool:
            return "kafka" in ingest.ctx.not_ready

        await wait_for(unreachable, within=30, what="/readyz to report the broker unreachable")
        own_broker.start()
        await ensure_topics(s, partitions=3)
        # The new log starts again at offset 0, far below the offsets PostgreSQL stored.
        await produce_stream(s, encode_mixed(after), per_second=1e9)

        async def reachable() -> bool:
            return "kafka" not in ingest.ctx.not_ready

        await wait_for(reachable, within=30, what="/readyz to see the broker again")

        async def all_applied() -> bool:
            async with checker.connect() as conn:
                from sqlalchemy import text

                count = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
            return int(count) == len(before) + len(after)

        await wait_for(all_applied, within=60, what="the new log to be read")
    await assert_ledger_matches(checker, before + after)
    assert metrics.OFFSET_OUT_OF_RANGE.labels(topic=s.input_topic)._value.get() > counted
    assert any("OFFSET OUT OF RANGE" in r.message for r in caplog.records)
