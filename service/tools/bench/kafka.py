"""`bench kafka`: Kafka → ledger. Produce the workload to a topic of this run, start
`relbank serve --role consumer` on it, time until every record is applied.

The rate is taken from the first applied batch to the last (joining the group is not ingest).
Apply p50/p99 come from the server's `relbank_apply_batch_seconds` histogram; peak lag is the
largest `relbank_consumer_lag_records` total it reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from service.domain.policy import Policy
from service.kafka.client import ensure_topics, make_producer, send_all
from service.settings import Settings, load_settings
from service.tools.bench import workload
from service.tools.bench.env import (
    Server,
    Target,
    Usage,
    histogram_quantile,
    metric_sum,
    sampling,
    scrape,
    stored_events,
)
from service.tools.bench.report import Row, progress

APPLY = "relbank_apply_batch_seconds"
# A scrape costs the consumer CPU (the exposition of every series), and the end is seen at the
# next scrape: seldom while the end is far, often as it nears (a quarter of the time left at the
# rate so far, within these bounds).
SCRAPE_SECONDS = (0.1, 1.0)


def topics(tgt: Target, mode: str) -> dict[str, Any]:
    """Topics and group of this run and mode: real data's offsets are never touched."""
    name = f"relbank.bench.{tgt.run_id}.{mode}"
    return {
        "input_topic": name,
        "dlq_topic": f"{name}.dlq",
        "alerts_topic": f"{name}.alerts",
        "consumer_group": f"relbank-bench-{tgt.run_id}-{mode}",
    }


def kafka_settings(tgt: Target, mode: str) -> Settings:
    return load_settings(
        database_url=tgt.database_url, kafka_bootstrap=tgt.kafka_bootstrap, **topics(tgt, mode)
    )


async def produce(settings: Settings, events: list[dict[str, Any]], desc: str) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        with progress(len(events), desc) as bar:
            for start in range(0, len(events), 5000):
                chunk = events[start : start + 5000]
                await send_all(producer, settings.input_topic, chunk)
                bar.update(len(chunk))
    finally:
        await producer.stop()


async def run_kafka(
    tgt: Target,
    policy: Policy,
    *,
    events: int,
    customers: int,
    partitions: int,
    instances: int = 1,
    members: int | None = None,
    within: float = 1800,
) -> Row:
    if not tgt.kafka_bootstrap:
        raise RuntimeError("bench kafka needs a broker: set RELBANK_KAFKA_BOOTSTRAP or --embedded")
    settings = kafka_settings(tgt, "kafka")
    await ensure_topics(settings, partitions=partitions)
    data = workload.corpus(policy, events=events, customers=customers, source=tgt.source("kafka"))
    await produce(settings, data, "kafka: produce")
    members = members or settings.consumer_members
    servers = [
        Server(tgt, "consumer", consumer_members=members, **topics(tgt, "kafka"))
        for _ in range(instances)
    ]
    usage = Usage([s.process for s in servers], await Usage.find_postgres(tgt.database_url))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for server in servers:
                await server.ready(client)
            row = await _watch(client, servers, usage, len(data), within)
    finally:
        for server in servers:
            server.stop()
    # Every distinct event stored: anything else is an error of the run.
    row.errors = workload.distinct(data) - await stored_events(
        tgt.database_url, tgt.source("kafka")
    )
    row.name = (
        f"kafka: {partitions} partitions, {instances} process{'es' * (instances > 1)} "
        f"x {members} member{'s' * (members > 1)}"
    )
    return row


async def _watch(
    client: httpx.AsyncClient, servers: list[Server], usage: Usage, total: int, within: float
) -> Row:
    """Poll the consumers' metrics until `total` records have a result."""

    async def scrape_all() -> list[dict[str, float]]:
        return list(await asyncio.gather(*(scrape(client, s) for s in servers)))

    def done(scraped: list[dict[str, float]]) -> int:
        return int(sum(metric_sum(m, "relbank_events_total", path="kafka") for m in scraped))

    before = await scrape_all()
    started = time.monotonic()
    first_at: float | None = None
    first_count = peak_lag = 0
    with progress(total, "kafka: apply") as bar:
        async with sampling(usage):
            count = 0
            low, high = SCRAPE_SECONDS
            interval = low
            while count < total:
                if time.monotonic() - started > within:
                    raise TimeoutError(f"{count} of {total} records applied in {within:.0f}s")
                await asyncio.sleep(interval)
                scraped = await scrape_all()
                peak_lag = max(
                    peak_lag,
                    int(sum(metric_sum(m, "relbank_consumer_lag_records") for m in scraped)),
                )
                bar.update(done(scraped) - count)
                count = done(scraped)
                if count and first_at is None:
                    first_at, first_count = time.perf_counter(), count
                    usage.start()
                elif first_at is not None and count > first_count:
                    rate = (count - first_count) / (time.perf_counter() - first_at)
                    interval = min(max((total - count) / rate / 4, low), high)
            elapsed = time.perf_counter() - (first_at or time.perf_counter())
    after = await scrape_all()
    # The rate over the timed span, stated for every record.
    applied = max(1, total - first_count)
    row = Row(
        "kafka",
        total,
        elapsed * total / applied,
        _merged_quantile(before, after, 0.5),
        _merged_quantile(before, after, 0.99),
        peak_lag=peak_lag,
        note="apply p50/p99 per batch (histogram)",
    )
    usage.finish(row)
    return row


def _merged_quantile(
    before: list[dict[str, float]], after: list[dict[str, float]], q: float
) -> float | None:
    merged_before: dict[str, float] = {}
    merged_after: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for k, v in b.items():
            merged_before[k] = merged_before.get(k, 0.0) + v
        for k, v in a.items():
            merged_after[k] = merged_after.get(k, 0.0) + v
    return histogram_quantile(merged_before, merged_after, APPLY, q)
