"""Kafka for the tests: consumers in this event loop, records produced at a pace or as an
endless stream with poison in it, and topics read back to their end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy
from service.kafka import codec
from service.kafka.client import ensure_topics, kafka_kwargs
from service.kafka.consumer import KafkaIngest
from service.settings import Settings
from tests.support.app import runtime_for
from tests.support.corpus import make_corpus
from tests.support.waiting import LEFTOVERS, wait_for


@asynccontextmanager
async def running_consumer(
    settings: Settings, engine: AsyncEngine, policy: Policy
) -> AsyncIterator[KafkaIngest]:
    """A consumer in this event loop, cancelled (as SIGTERM would) on exit."""
    rt = runtime_for(settings, engine, policy)
    await rt.app.activate_policy()
    ingest = KafkaIngest(rt)
    task = asyncio.create_task(ingest.run())
    try:
        yield ingest
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class DlqRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    all_headers: list[tuple[str, bytes]]


async def read_topic(settings: Settings, topic: str, *, quiet_seconds: float = 1.5) -> list[Any]:
    """Every record of `topic`, read until the end of each partition (by highwater)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_seconds:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if batch:
                quiet_since = time.monotonic()
            caught_up = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    caught_up = False
            if caught_up and not batch:
                break
        return records
    finally:
        await consumer.stop()


def dead_letters(records: Iterable[Any]) -> list[DlqRecord]:
    return [
        DlqRecord(r.key, r.value, {k: v for k, v in r.headers}, list(r.headers)) for r in records
    ]


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def _send_paced(
    producer: AIOKafkaProducer,
    topic: str,
    records: list[Record],
    *,
    per_second: float,
    chunk: int = 200,
) -> list[tuple[int, int]]:
    placed: list[tuple[int, int]] = []
    for i in range(0, len(records), chunk):
        started = time.monotonic()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records[i : i + chunk]
        ]
        for metadata in await asyncio.gather(*futures):
            placed.append((metadata.partition, metadata.offset))
        await asyncio.sleep(max(0.0, chunk / per_second - (time.monotonic() - started)))
    return placed


async def produce_stream(
    settings: Settings,
    records: list[Record],
    *,
    per_second: float,
    chunk: int = 200,
) -> list[tuple[int, int]]:
    """Produce (key, value, headers) records at about `per_second`; returns (partition, offset)
    of each, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        return await _send_paced(
            producer, settings.input_topic, records, per_second=per_second, chunk=chunk
        )
    finally:
        await producer.stop()


class Stream:
    """Records produced at about `per_second` from `start()` until `stop()`: a stream as long as
    the test needs, however slow the machine. Fresh corpus chunks (ids `s{seed}.{chunk}-{i}`),
    each with a poison record and a conflicting duplicate when `poison_every` is set.
    Only whole acknowledged chunks are counted in `records`, `booked`, `poison` and `placed`."""

    def __init__(
        self,
        settings: Settings,
        *,
        per_second: float,
        seed: int,
        customers: int = 300,
        poison_every: int | None = None,
    ) -> None:
        self.settings = settings
        self.per_second = per_second
        self.seed = seed
        self.customers = customers
        self.poison_every = poison_every
        LEFTOVERS.append(self)
        self.records: list[Record] = []
        self.booked: list[dict[str, Any]] = []  # the events a correct consumer books
        self.poison: set[int] = set()  # indexes into `records`
        self.placed: list[tuple[int, int]] = []  # (partition, offset) of each record
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            n = 0
            while not self._stopping.is_set():
                seed = self.seed * 1000 + n
                prefix = f"s{self.seed}.{n}-"
                if self.poison_every:
                    size = self.poison_every + 1  # one poison point per chunk
                    events = make_corpus(size, customers=self.customers, seed=seed, prefix=prefix)
                    records, booked, poison = with_poison(
                        events, every=self.poison_every, seed=seed
                    )
                else:
                    events = make_corpus(1000, customers=self.customers, seed=seed, prefix=prefix)
                    records, booked, poison = encode_mixed(events), events, set()
                placed = await _send_paced(
                    producer, self.settings.input_topic, records, per_second=self.per_second
                )
                self.poison |= {len(self.records) + i for i in poison}
                self.records += records
                self.booked += booked
                self.placed += placed
                n += 1
        finally:
            await producer.stop()

    async def stop(self) -> None:
        """Finish the chunk in flight and stop."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def kill(self) -> None:
        self.cancel()

    def dead_letter_origins(self) -> set[str]:
        topic = self.settings.input_topic
        return {f"{topic}/{self.placed[i][0]}/{self.placed[i][1]}" for i in self.poison}


def encode_mixed(events: list[dict[str, Any]]) -> list[Record]:
    """Every other event in binary mode, the rest structured."""
    return [
        (codec.encode_binary if i % 2 else codec.encode_structured)(event)
        for i, event in enumerate(events)
    ]


def with_poison(
    events: list[dict[str, Any]], *, every: int, seed: int = 0
) -> tuple[list[Record], list[dict[str, Any]], set[int]]:
    """The events encoded (mixed modes), with a record that is not JSON and a conflicting
    duplicate of an earlier event every `every` events. Returns the records, the events a
    correct consumer books (first of each (source, id)), and the indexes of the poison records."""
    rng = random.Random(seed)
    records = []
    poison: set[int] = set()
    for i, (event, record) in enumerate(zip(events, encode_mixed(events), strict=True)):
        records.append(record)
        if i and i % every == 0:
            poison.add(len(records))
            records.append((event["subject"].encode(), b"{not json", []))
            earlier = events[rng.randrange(i)]
            conflicting = dict(
                earlier,
                type="support.escalated"
                if earlier["type"] != "support.escalated"
                else "sla.breached",
            )
            poison.add(len(records))
            records.append(codec.encode_structured(conflicting))
    return records, events, poison


async def dlq_origins(settings: Settings) -> dict[str, str]:
    """origin → reason of every dead letter (several letters may share an origin)."""
    letters = dead_letters(await read_topic(settings, settings.dlq_topic))
    return {
        letter.headers["relbank-origin"].decode(): letter.headers["relbank-error"].decode()
        for letter in letters
    }


async def recreate_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([topic])

        async def gone() -> bool:
            return topic not in set(await admin.list_topics())

        await wait_for(gone, within=30, what=f"{topic} to be deleted")
    finally:
        await admin.close()
    await ensure_topics(settings, partitions=3)
