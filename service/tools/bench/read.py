"""`bench read`: the hot reads at a fixed rate while events are ingested at a fixed rate.

Reads go to `relbank serve --role api`; the ingest goes through Kafka to a `--role consumer`
process when there is a broker (as a deployment splits them), else to the same API server in
batches of 100. The readers run in a process of their own (`readers`), open-loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import orjson

from service.domain.policy import Policy
from service.kafka.client import ensure_topics, make_producer, send_all
from service.storage import bench as store
from service.storage.db import Database
from service.tools.bench import readers, workload
from service.tools.bench.env import Server, Target, Usage, metric_sum, sampling, scrape
from service.tools.bench.http import Connection
from service.tools.bench.kafka import kafka_settings, topics
from service.tools.bench.report import Row, progress


async def seed(tgt: Target, accounts: int) -> str:
    """`accounts` synthetic accounts to read (prefix returned)."""
    prefix = tgt.source("read")
    db = Database.connect(tgt.database_url, pool_size=1)
    try:

        async def work(conn: Any) -> None:
            await store.seed_accounts(conn, prefix, accounts)

        await db.transaction(work)
    finally:
        await db.dispose()
    return prefix


async def _ingest_kafka(tgt: Target, events: list[dict[str, Any]], rate: float) -> None:
    settings = kafka_settings(tgt, "read")
    producer = make_producer(settings)
    await producer.start()
    try:
        tick = 0.1
        per_tick = max(1, int(rate * tick))
        started = time.perf_counter()
        for n, start in enumerate(range(0, len(events), per_tick)):
            await send_all(producer, settings.input_topic, events[start : start + per_tick])
            await asyncio.sleep(max(0.0, started + (n + 1) * tick - time.perf_counter()))
    finally:
        await producer.stop()


async def _ingest_http(url: str, events: list[dict[str, Any]], rate: float) -> None:
    conn = Connection(url)
    try:
        per = 100
        started = time.perf_counter()
        for n, start in enumerate(range(0, len(events), per)):
            await conn.request("POST", "/v1/events", orjson.dumps(events[start : start + per]))
            await asyncio.sleep(max(0.0, started + (n + 1) * per / rate - time.perf_counter()))
    finally:
        await conn.close()


async def _ingest(tgt: Target, url: str, events: list[dict[str, Any]], rate: float) -> None:
    if tgt.kafka_bootstrap:
        await _ingest_kafka(tgt, events, rate)
    else:
        await _ingest_http(url, events, rate)


async def run_read(
    tgt: Target,
    policy: Policy,
    *,
    accounts: int,
    customers: int,
    ingest_rate: float,
    read_rate: float,
    list_rate: float,
    seconds: float,
) -> list[Row]:
    data = workload.corpus(
        policy, events=int(ingest_rate * seconds), customers=customers, source=tgt.source("ingest")
    )
    via_kafka = tgt.kafka_bootstrap is not None
    api = Server(tgt, "api")
    servers = [api]
    if via_kafka:
        await ensure_topics(kafka_settings(tgt, "read"), partitions=3)
        servers.append(Server(tgt, "consumer", **topics(tgt, "read")))
    usage = Usage([s.process for s in servers], await Usage.find_postgres(tgt.database_url))
    spawn = multiprocessing.get_context("spawn")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for server in servers:
                await server.ready(client)  # the policy is recorded: accounts can be seeded
            with progress(accounts, "read: seed accounts", unit="acct") as bar:
                prefix = await seed(tgt, accounts)
                bar.update(accounts)
            # Measured once the ingest path is warm (the consumer has joined its group and
            # applied an event) and each read has been served once.
            await _ingest(tgt, api.url, data[:1], ingest_rate)
            await _ingest_started(client, servers[-1])
            for path in (
                "/v1/at-risk?limit=100",
                "/v1/alerts?limit=100",
                f"/v1/customers/{prefix}-1",
            ):
                (await client.get(api.url + path)).raise_for_status()
        load = readers.ReadLoad(api.url, prefix, accounts, read_rate, list_rate, seconds)
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            await loop.run_in_executor(pool, readers.warm_up)
            usage.start()
            started = time.perf_counter()
            ingesting = asyncio.create_task(_ingest(tgt, api.url, data[1:], ingest_rate))
            async with sampling(usage):
                with progress(int(seconds), "read: under ingest", unit="s") as bar:
                    ticker = asyncio.create_task(_tick(bar, seconds))
                    rows = await loop.run_in_executor(pool, readers.read, load)
                    ticker.cancel()
                await ingesting
        total = Row(
            f"read: ingest at {ingest_rate:g}/s ({'kafka' if via_kafka else 'http'})",
            len(data),
            time.perf_counter() - started,
        )
        usage.finish(total)
        return [*rows, total]
    finally:
        for server in servers:
            server.stop()


async def _ingest_started(client: httpx.AsyncClient, server: Server, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if metric_sum(await scrape(client, server), "relbank_events_total") > 0:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("no event was ingested")


async def _tick(bar: Any, seconds: float) -> None:
    for _ in range(int(seconds)):
        await asyncio.sleep(1)
        bar.update(1)
