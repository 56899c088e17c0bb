"""The readers of `bench read`, run in a process of their own: on a small machine a load generator
sharing an event loop (and a core) with the ingest producer measures its own queueing, not the
service's. Reads are open-loop: each is timed from when it was due, so a stall of the service
shows up in the latency of every read it held back instead of slowing the readers down; and the
process reports the CPU it used, to show it was not the bottleneck."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.tools.bench.env import run_loop
from service.tools.bench.http import Connection
from service.tools.bench.report import Row, percentile


@dataclass(frozen=True, slots=True)
class ReadLoad:
    url: str
    prefix: str  # accounts `<prefix>-1` .. `<prefix>-<accounts>`
    accounts: int
    read_rate: float  # GET /v1/customers/{id} per second
    list_rate: float  # at-risk and alert-feed reads per second, each
    seconds: float


class Pool:
    """Keep-alive connections, one per request in flight, at most `size` (as a client's
    connection pool would be): past that, reads wait their turn, and the wait counts."""

    def __init__(self, url: str, size: int = 64) -> None:
        self.url = url
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(size)

    async def get(self, path: str) -> int:
        async with self.slots:
            # An idle connection the server has closed (keep-alive timeout) is retried on a new
            # one, as an HTTP client does; a new one that fails is an error.
            for conn in ([self.idle.pop()] if self.idle else []) + [Connection(self.url)]:
                try:
                    status, _ = await conn.request("GET", path)
                except (OSError, ConnectionError, asyncio.IncompleteReadError):
                    await conn.close()
                    continue
                self.idle.append(conn)
                return status
            return 0

    async def close(self) -> None:
        for conn in self.idle:
            await conn.close()


async def _open_loop(
    name: str, rate: float, seconds: float, request: Callable[[], Awaitable[int]]
) -> Row:
    latencies: list[float] = []
    served: list[float] = []  # from when the request actually went out
    failed: Counter[int] = Counter()  # by status; 0: no answer
    tasks: list[asyncio.Task[None]] = []

    async def one(due: float) -> None:
        sent = time.perf_counter()
        status = await request()
        latencies.append(time.perf_counter() - due)
        served.append(time.perf_counter() - sent)
        if status != 200:
            failed[status] += 1

    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return Row(
        f"read: {name} at {rate:g}/s",
        0,
        0.0,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        percentile(latencies, 0.999),
        errors=sum(failed.values()),
        note=", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(failed.items())),
        extra={"served_p50": percentile(served, 0.5), "served_p99": percentile(served, 0.99)},
    )


async def _read(load: ReadLoad) -> list[Row]:
    pool = Pool(load.url)
    rng = random.Random(5)
    try:
        return list(
            await asyncio.gather(
                _open_loop(
                    "GET /v1/customers/{id}",
                    load.read_rate,
                    load.seconds,
                    lambda: pool.get(
                        f"/v1/customers/{load.prefix}-{rng.randint(1, load.accounts)}"
                    ),
                ),
                _open_loop(
                    "GET /v1/at-risk?limit=100",
                    load.list_rate,
                    load.seconds,
                    lambda: pool.get("/v1/at-risk?limit=100"),
                ),
                _open_loop(
                    "GET /v1/alerts?limit=100",
                    load.list_rate,
                    load.seconds,
                    lambda: pool.get(
                        f"/v1/alerts?limit=100&after={rng.randint(0, load.accounts // 20)}"
                    ),
                ),
            )
        )
    finally:
        await pool.close()


def warm_up() -> None:
    """Run first in the readers' process, so that starting it is not part of the measurement."""


def read(load: ReadLoad) -> list[Row]:
    """The open-loop reads of `load` (run in the readers' process); each row notes the cores this
    process used meanwhile (`extra["client_cpu"]`)."""
    wall, cpu = time.perf_counter(), time.process_time()
    rows = run_loop(_read(load))
    cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
    for row in rows:
        row.extra["client_cpu"] = cores
        row.note = ", ".join(n for n in (row.note, f"client CPU {cores:.2f}") if n)
    return rows
