"""`relbank bench http`: ingest throughput and read latency of a real server over TCP.

Starts `relbank serve` in a subprocess (on an embedded PostgreSQL unless --database-url is given)
and drives it with concurrent clients from this process. Figures from one run are also given as
ratios (batched vs single ingest, reads vs /healthz), which carry across machines better than
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from service.demo import demo_events
from service.domain.policy import load_policy


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _wait_ready(client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("server did not become ready")


async def _ingest(
    client: httpx.AsyncClient, events: list[dict[str, Any]], batch: int, concurrency: int
) -> float:
    """Events per second posting `events` in batches of `batch` from `concurrency` clients."""
    chunks = [events[i : i + batch] for i in range(0, len(events), batch)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker() -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            body = chunk if batch > 1 else chunk[0]
            response = await client.post("/v1/events", json=body)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(events) / (time.perf_counter() - started)


async def _latencies(
    request: Callable[[int], Awaitable[httpx.Response]], n: int, concurrency: int
) -> list[float]:
    samples: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            response = await request(i)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def _run(url: str, args: argparse.Namespace) -> list[str]:
    policy = load_policy()
    now = datetime.now(UTC)
    batched = demo_events(
        policy,
        customers=args.customers,
        events_per_customer=args.per_customer,
        now=now,
        source="bench-batch",
    )
    singles = demo_events(
        policy,
        customers=50,
        events_per_customer=max(1, args.singles // 50),
        now=now,
        source="bench-single",
        seed=11,
    )[: args.singles]
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await _wait_ready(client, time.monotonic() + 60)
        batch_rate = await _ingest(client, batched, args.batch, args.concurrency)
        single_rate = await _ingest(client, singles, 1, args.concurrency)
        customers = sorted({e["subject"] for e in batched})
        at = now.isoformat()
        reads: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
            "GET /healthz": lambda i: client.get("/healthz"),
            "GET /v1/customers/{id}": lambda i: client.get(
                f"/v1/customers/{customers[i % len(customers)]}"
            ),
            "GET /v1/customers/{id}/balance?at=": lambda i: client.get(
                f"/v1/customers/{customers[i % len(customers)]}/balance", params={"at": at}
            ),
            "GET /v1/customers/{id}/ledger": lambda i: client.get(
                f"/v1/customers/{customers[i % len(customers)]}/ledger", params={"limit": 50}
            ),
            "GET /v1/at-risk?limit=100": lambda i: client.get("/v1/at-risk", params={"limit": 100}),
            "GET /v1/alerts?limit=100": lambda i: client.get("/v1/alerts", params={"limit": 100}),
        }
        results = {
            name: await _latencies(request, args.reads, args.concurrency)
            for name, request in reads.items()
        }
    base = statistics.median(results["GET /healthz"])
    lines = [
        f"ingest, batches of {args.batch}: {len(batched)} events, {batch_rate:,.0f} events/s "
        f"({args.concurrency} concurrent clients)",
        f"ingest, single events: {len(singles)} events, {single_rate:,.0f} events/s "
        f"(batched/single = {batch_rate / single_rate:.1f}x)",
        f"reads ({args.reads} each, {args.concurrency} concurrent): p50 / p99 ms, p50 vs /healthz",
    ]
    for name, samples in results.items():
        p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
        lines.append(f"  {name:40s} {p50 * 1e3:7.2f} / {p99 * 1e3:7.2f}   {p50 / base:5.1f}x")
    return lines


def run_http(args: argparse.Namespace) -> None:
    from service.embedded import free_port, start_postgres

    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="relbank-bench-") as tmp:
        pg = None
        database_url = args.database_url
        if database_url is None:
            pg = start_postgres(Path(tmp) / "pgdata")
            database_url = pg.url
        port = free_port()
        env = os.environ | {
            "RELBANK_DATABASE_URL": database_url,
            "RELBANK_AUTH": "disabled",
            "RELBANK_PORT": str(port),
            "RELBANK_LOG_LEVEL": "WARNING",
        }
        env.pop("RELBANK_KAFKA_BOOTSTRAP", None)
        relbank = [sys.executable, "-m", "service.cli"]
        subprocess.run([*relbank, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        server = subprocess.Popen([*relbank, "serve", "--role", "api"], env=env)
        try:
            lines = asyncio.run(_run(f"http://127.0.0.1:{port}", args))
        finally:
            server.terminate()
            server.wait(timeout=30)
            if pg:
                pg.stop()
    print(f"relbank bench http ({os.cpu_count()} cores)")
    for line in lines:
        print(line)


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="load generation and measurement")
    kinds = bench.add_subparsers(dest="kind", required=True)
    http = kinds.add_parser("http", help="HTTP ingest throughput and read latency")
    http.add_argument("--database-url", help="PostgreSQL to use (default: an embedded one)")
    http.add_argument("--customers", type=int, default=2000)
    http.add_argument("--per-customer", type=int, default=25, help="mean events per customer")
    http.add_argument("--batch", type=int, default=500)
    http.add_argument("--singles", type=int, default=2000, help="events posted one by one")
    http.add_argument("--concurrency", type=int, default=4)
    http.add_argument("--reads", type=int, default=1000, help="requests per read endpoint")
    http.set_defaults(func=run_http)

    kafka = kinds.add_parser("kafka", help="sustained Kafka → ledger throughput")
    kafka.add_argument("--events", type=int, default=50_000)
    kafka.add_argument("--customers", type=int, default=5_000)
    kafka.add_argument("--partitions", type=int, default=3)
    kafka.add_argument(
        "--embedded",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="own PostgreSQL and broker (default: when RELBANK_KAFKA_BOOTSTRAP is unset)",
    )
    kafka.set_defaults(func=run_kafka)


def run_kafka(args: argparse.Namespace) -> None:
    from service.kafka.bench import run

    run(
        events=args.events,
        customers=args.customers,
        partitions=args.partitions,
        embedded=args.embedded,
    )
