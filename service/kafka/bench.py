"""Kafka → ledger throughput: produce N events, run one consumer, time the applying.

`run()` is what `relbank bench kafka` calls. With `embedded` (the default when
RELBANK_KAFKA_BOOTSTRAP is unset) it starts its own PostgreSQL and broker in a temporary
directory; otherwise it uses the configured ones, on a topic and group of its own, with events of
a source of its own (`bench-<run id>`), so it never touches real data's offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from service.api.auth import Authenticator
from service.api.context import Context
from service.demo import demo_events
from service.domain.policy import Policy, load_policy
from service.kafka.client import ensure_topics, produce_events
from service.kafka.consumer import KafkaIngest
from service.settings import Settings, load_settings
from service.storage import policies
from service.storage.db import make_engine


@dataclass(frozen=True, slots=True)
class BenchResult:
    events: int
    produce_seconds: float
    apply_seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.apply_seconds if self.apply_seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"produced {self.events} events in {self.produce_seconds:.1f}s",
            f"applied them (Kafka → ledger, one consumer) in {self.apply_seconds:.1f}s",
            f"sustained throughput: {self.events_per_second:,.0f} events/s",
        ]


def corpus(policy: Policy, events: int, customers: int, source: str) -> list[dict[str, Any]]:
    """`events` synthetic events over `customers` customers, all of `source` (customer ids are
    prefixed with it)."""
    per_customer = max(1, events // customers)
    made = demo_events(
        policy,
        customers=customers,
        events_per_customer=per_customer,
        source=source,
        seed=11,
    )
    while len(made) < events:  # the generator varies the count per customer
        extra = demo_events(
            policy,
            customers=customers,
            events_per_customer=per_customer,
            source=source,
            seed=len(made),
        )
        made += [dict(e, id=f"x{len(made)}-{e['id']}") for e in extra]
    # Customers of their own too: a bench against a real database leaves real accounts alone.
    return [dict(e, subject=f"{source}-{e['subject']}") for e in made[:events]]


async def measure(
    settings: Settings,
    policy: Policy,
    *,
    events: int,
    customers: int,
    partitions: int,
    limit_seconds: float = 600,
) -> BenchResult:
    run_id = uuid.uuid4().hex[:8]
    source = f"bench-{run_id}"
    settings = settings.model_copy(
        update={
            "input_topic": f"relbank.bench.{run_id}",
            "dlq_topic": f"relbank.bench.{run_id}.dlq",
            "consumer_group": f"relbank-bench-{run_id}",
        }
    )
    await ensure_topics(settings, partitions=partitions)
    data = corpus(policy, events, customers, source)
    started = time.perf_counter()
    await produce_events(settings, data)
    produce_seconds = time.perf_counter() - started

    engine = make_engine(settings.async_database_url, pool_size=4)
    try:
        async with engine.begin() as conn:
            await policies.activate(conn, policy)
        ctx = Context(settings, policy, engine, Authenticator(None))
        task = asyncio.create_task(KafkaIngest(ctx).run())
        try:
            # Timed from the first applied batch to the last: joining the group is not ingestion.
            first_at, first_count = None, 0
            while True:
                async with engine.connect() as conn:
                    count = (
                        await conn.execute(
                            text("SELECT count(*) FROM events WHERE source = :s"), {"s": source}
                        )
                    ).scalar_one()
                now = time.perf_counter()
                if count and first_at is None:
                    first_at, first_count = now, count
                if count >= len(data):
                    break
                if task.done():
                    task.result()
                if now - started > limit_seconds:
                    raise TimeoutError(f"{count} of {len(data)} events applied in {limit_seconds}s")
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await engine.dispose()
    assert first_at is not None
    applied = len(data) - first_count
    seconds = now - first_at
    # Scale to all events: the rate over the timed span.
    return BenchResult(len(data), produce_seconds, seconds * len(data) / max(applied, 1))


@contextlib.contextmanager
def _embedded() -> Iterator[dict[str, Any]]:
    from service import embedded
    from service.storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="relbank-bench-") as tmp:
        pg = embedded.start_postgres(Path(tmp) / "pgdata")
        broker = embedded.start_broker(Path(tmp) / "broker.log", port=0)
        try:
            upgrade(pg.url)
            yield {"database_url": pg.url, "kafka_bootstrap": broker.bootstrap, "auth": "disabled"}
        finally:
            broker.stop()
            pg.stop()


def run(
    *,
    events: int = 50_000,
    customers: int = 5_000,
    partitions: int = 3,
    embedded: bool | None = None,
) -> BenchResult:
    """Print and return the measured Kafka → ledger throughput."""
    base = load_settings()
    if embedded is None:
        embedded = not base.kafka_bootstrap
    policy = load_policy(base.policy)
    with contextlib.ExitStack() as stack:
        overrides = stack.enter_context(_embedded()) if embedded else {}
        settings = load_settings(**overrides) if overrides else base
        result = asyncio.run(
            measure(settings, policy, events=events, customers=customers, partitions=partitions)
        )
    for line in result.lines():
        print(f"relbank bench kafka: {line}")
    return result
