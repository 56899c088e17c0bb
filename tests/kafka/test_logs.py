"""Naming the log behind a topic (README): the topic id where the broker has one, else the
broker's incarnation (the cluster id, fresh for every broker the dev stack starts)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from service.embedded import EmbeddedBroker
from service.kafka.client import ensure_topics
from service.kafka.logs import describe, log_id, log_ids
from service.settings import Settings
from service.storage import offsets
from service.storage.offsets import Move
from tests.kafka.conftest import RestartableBroker, kafka_settings_for
from tests.support.kafka import recreate_topic


@asynccontextmanager
async def kafka_client(bootstrap: str) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin._client
    finally:
        await admin.close()


def test_a_log_is_named_by_its_topic_id_else_by_the_broker_incarnation() -> None:
    topic_id = uuid.uuid4()
    assert log_id(topic_id, "cluster-a") == f"topic:{topic_id}"
    # A broker without topic ids answers all zeros.
    assert log_id(uuid.UUID(int=0), "cluster-a") == "cluster:cluster-a"
    assert log_id(None, "cluster-a") == "cluster:cluster-a"
    assert log_id(None, None) is None
    assert log_id(uuid.UUID(int=0), "") is None


async def test_a_recreated_topic_is_another_log(
    kafka_settings: Settings, broker: EmbeddedBroker
) -> None:
    s = kafka_settings
    async with kafka_client(broker.bootstrap) as client:
        before = await log_ids(client, [s.input_topic, s.dlq_topic, "no-such-topic"])
        assert str(before[s.input_topic]).startswith("topic:")
        assert before[s.input_topic] != before[s.dlq_topic]
        assert before["no-such-topic"] is None
        assert await log_ids(client, [s.input_topic]) == {s.input_topic: before[s.input_topic]}
    await recreate_topic(s, s.input_topic)
    async with kafka_client(broker.bootstrap) as client:
        after = await log_ids(client, [s.input_topic, s.dlq_topic])
    assert after[s.input_topic] not in (None, before[s.input_topic])
    assert after[s.dlq_topic] == before[s.dlq_topic]


async def test_every_broker_the_dev_stack_starts_is_another_incarnation(
    own_broker: RestartableBroker, database_url: str
) -> None:
    s = kafka_settings_for(database_url, own_broker.bootstrap)
    await ensure_topics(s, partitions=1)
    async with kafka_client(own_broker.bootstrap) as client:
        first_cluster, first_ids = await describe(client, [s.input_topic])
    own_broker.stop()
    own_broker.start()
    await ensure_topics(s, partitions=1)
    async with kafka_client(own_broker.bootstrap) as client:
        second_cluster, second_ids = await describe(client, [s.input_topic])
    assert first_cluster
    assert second_cluster
    assert first_cluster != second_cluster
    assert first_ids[s.input_topic] != second_ids[s.input_topic]


async def test_stored_offsets_keep_the_name_of_their_log(clean: AsyncEngine) -> None:
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "g", [Move("t", 0, None, 5, "topic:a")])
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "g", [Move("t", 0, 5, 7, "topic:b")])
    async with clean.connect() as conn:
        stored = await offsets.load(conn, "g", [("t", 0)])
    assert stored == {("t", 0): offsets.Stored(7, "topic:b")}
