"""`bench http`: HTTP ingest against `relbank serve --role api`: batches of B from K clients,
then single events from K' clients (request p50/p99 of each).

The load comes from a minimal keep-alive HTTP/1.1 client on asyncio streams rather than httpx:
on a small machine the client's own CPU would otherwise be most of what is measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from service.domain.policy import Policy
from service.tools.bench import workload
from service.tools.bench.env import Server, Target, Usage, sampling
from service.tools.bench.report import Row, percentile, progress


class Connection:
    """One keep-alive HTTP/1.1 connection; requests and answers with a Content-Length."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("the server closed the connection")
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def post_all(
    url: str, bodies: Sequence[bytes], sizes: Sequence[int], concurrency: int, desc: str
) -> tuple[list[float], int, float]:
    """POST each body to /v1/events from `concurrency` connections: latencies, errors, wall."""
    latencies: list[float] = []
    errors = 0
    queue = iter(zip(bodies, sizes, strict=True))

    async def worker(bar: Any) -> None:
        nonlocal errors
        conn = Connection(url)
        try:
            for body, size in queue:
                t0 = time.perf_counter()
                status, _ = await conn.request("POST", "/v1/events", body)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
                bar.update(size)
        finally:
            await conn.close()

    with progress(sum(sizes), desc) as bar:
        started = time.perf_counter()
        await asyncio.gather(*(worker(bar) for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


async def measure_posts(
    server: Server,
    usage: Usage,
    name: str,
    events: list[dict[str, Any]],
    batch: int,
    concurrency: int,
) -> Row:
    if batch == 1:
        bodies = [orjson.dumps(e) for e in events]
        sizes = [1] * len(events)
    else:
        chunks = [events[i : i + batch] for i in range(0, len(events), batch)]
        bodies = [orjson.dumps(c) for c in chunks]
        sizes = [len(c) for c in chunks]
    usage.start()
    async with sampling(usage):
        latencies, errors, wall = await post_all(server.url, bodies, sizes, concurrency, name)
    row = Row(
        name,
        len(events),
        wall,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        errors=errors,
        note="request p50/p99",
    )
    usage.finish(row)
    return row


async def run_http(
    tgt: Target,
    policy: Policy,
    *,
    events: int,
    customers: int,
    batch: int,
    concurrency: int,
    singles: int,
    singles_concurrency: int,
) -> list[Row]:
    batched = workload.corpus(
        policy, events=events, customers=customers, source=tgt.source("http-batch")
    )
    single = workload.corpus(
        policy, events=singles, customers=customers, source=tgt.source("http-single"), seed=12
    )
    server = Server(tgt, "api")
    usage = Usage([server.process], await Usage.find_postgres(tgt.database_url))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await server.ready(client)
        return [
            await measure_posts(
                server,
                usage,
                f"http: batches of {batch}, {concurrency} clients",
                batched,
                batch,
                concurrency,
            ),
            await measure_posts(
                server,
                usage,
                f"http: single events, {singles_concurrency} clients",
                single,
                1,
                singles_concurrency,
            ),
        ]
    finally:
        server.stop()
