"""aiokafka clients built from the settings: security, topics, a producer helper."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from service.errors import StartupError
from service.kafka import codec
from service.settings import Settings

log = logging.getLogger("relbank.kafka")


def kafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection and security arguments shared by every aiokafka client."""
    if not settings.kafka_bootstrap:
        raise StartupError("RELBANK_KAFKA_BOOTSTRAP is not set")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": "relbank",
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # No CA file: the system trust store.
        kwargs["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        if not (
            settings.kafka_sasl_mechanism
            and settings.kafka_sasl_username
            and settings.kafka_sasl_password is not None
        ):
            raise StartupError(
                "RELBANK_KAFKA_SECURITY_PROTOCOL is "
                f"{settings.kafka_security_protocol}: set RELBANK_KAFKA_SASL_MECHANISM, "
                "RELBANK_KAFKA_SASL_USERNAME and RELBANK_KAFKA_SASL_PASSWORD"
            )
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas: a record it acknowledges is safe to
    move an offset past."""
    options: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**kafka_kwargs(settings), **options)


async def ensure_topics(settings: Settings, partitions: int = 3) -> list[str]:
    """Create the input, dead-letter and alerts topics that do not exist yet; returns those made."""
    wanted = [settings.input_topic, settings.dlq_topic, settings.alerts_topic]
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
        )
        made = []
        for topic, error_code, *rest in response.topic_errors:
            # 36: TOPIC_ALREADY_EXISTS, created meanwhile by another instance.
            if error_code not in (0, 36):
                raise RuntimeError(f"cannot create Kafka topic {topic}: error {error_code} {rest}")
            if error_code == 0:
                made.append(topic)
        # Metadata of a new topic reaches every broker shortly after; give it a moment.
        await asyncio.sleep(0.2)
        log.info("created Kafka topics %s with %d partitions", made, partitions)
        return made
    finally:
        await admin.close()


async def produce_events(
    settings: Settings,
    events: Iterable[Mapping[str, Any]],
    *,
    binary: bool = False,
    topic: str | None = None,
) -> int:
    """Produce CloudEvents to the input topic, keyed by customer id; returns how many were
    acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    try:
        return await send_all(producer, topic or settings.input_topic, events, binary=binary)
    finally:
        await producer.stop()


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    events: Iterable[Mapping[str, Any]],
    *,
    binary: bool = False,
) -> int:
    encode = codec.encode_binary if binary else codec.encode_structured
    pending: list[asyncio.Future[Any]] = []
    sent = 0
    for event in events:
        key, value, headers = encode(event)
        pending.append(await producer.send(topic, value, key=key, headers=headers))
        if len(pending) >= 10_000:
            await asyncio.gather(*pending)
            sent += len(pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent + len(pending)
