"""Where a bench runs: the PostgreSQL and broker (embedded, or the configured ones), relbank
servers as subprocesses (`relbank serve --role ...`), and what they cost (psutil, /metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from service.settings import load_settings
from service.storage import bench as store
from service.storage.db import make_engine

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`main` on uvloop, as the server runs (where uvicorn[standard] installed it), else on
    asyncio's loop: the load generators' own CPU is what a small machine can least spare (the
    readers of `bench read` used 0.09 of a core on uvloop against 0.13 on asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


@dataclass(slots=True)
class Target:
    """The PostgreSQL and broker every mode of one run uses."""

    database_url: str
    kafka_bootstrap: str | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def source(self, mode: str) -> str:
        """A source (and customer-id prefix) of this run and mode alone."""
        return f"bench-{self.run_id}-{mode}"


@contextlib.contextmanager
def target(
    *, embedded: bool | None, database_url: str | None = None, kafka_bootstrap: str | None = None
) -> Iterator[Target]:
    """Embedded PostgreSQL and broker in a temporary directory (the default when no broker is
    configured), else the configured ones (RELBANK_* settings, or the arguments)."""
    settings = load_settings()
    bootstrap = kafka_bootstrap or settings.kafka_bootstrap
    if embedded is None:
        embedded = database_url is None and bootstrap is None
    if not embedded:
        yield Target(database_url or settings.async_database_url, bootstrap)
        return
    from service import embedded as emb
    from service.storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="relbank-bench-") as tmp:
        pg = emb.start_postgres(Path(tmp) / "pgdata")
        broker = None
        try:
            broker = emb.start_broker(Path(tmp) / "broker.log", port=0)
            upgrade(pg.url)
            yield Target(pg.url, broker.bootstrap)
        finally:
            if broker:
                broker.stop()
            pg.stop()


class Server:
    """`relbank serve --role ROLE` in a subprocess, auth off, on a free port."""

    def __init__(self, tgt: Target, role: str, **settings: object) -> None:
        from service.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Settings the bench does not set stay the user's (SASL, pool size, policy...).
        env = dict(os.environ) | {
            "RELBANK_DATABASE_URL": tgt.database_url,
            "RELBANK_AUTH": "disabled",
            "RELBANK_HOST": "127.0.0.1",
            "RELBANK_PORT": str(self.port),
            "RELBANK_LOG_LEVEL": "WARNING",
        }
        env.pop("RELBANK_KAFKA_BOOTSTRAP", None)
        if tgt.kafka_bootstrap and role in ("consumer", "all"):
            env["RELBANK_KAFKA_BOOTSTRAP"] = tgt.kafka_bootstrap
        env |= {f"RELBANK_{k.upper()}": str(v) for k, v in settings.items()}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--role", role], env=env
        )
        self.process = psutil.Process(self.popen.pid)

    async def ready(self, client: httpx.AsyncClient, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"relbank server exited with {self.popen.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{self.url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("relbank server did not become ready")

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


async def scrape(client: httpx.AsyncClient, server: Server) -> dict[str, float]:
    """The server's /metrics as {"name{label=value,...}": value} (labels sorted)."""
    response = await client.get(f"{server.url}/metrics")
    response.raise_for_status()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


def metric_sum(scraped: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(
        v
        for k, v in scraped.items()
        if k.split("{", 1)[0] == name and all(w in k.split("{", 1)[1] for w in want)
    )


def histogram_quantile(
    before: dict[str, float], after: dict[str, float], name: str, q: float
) -> float | None:
    """The `q` quantile of what a histogram observed between two scrapes, interpolated within
    its buckets as Prometheus does."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{"):
            le = key.split("le=", 1)[1].split(",", 1)[0].rstrip("}")
            buckets.append((float(le), value - before.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    low, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return low
            return low + (upper - low) * (rank - below) / max(count - below, 1e-9)
        low, below = upper, count
    return low


class Usage:
    """CPU of relbank's processes and of PostgreSQL, and relbank's peak RSS, over a span."""

    def __init__(self, relbank: list[psutil.Process], postgres: psutil.Process | None) -> None:
        self.relbank = relbank
        self.postgres = postgres
        self.peak_rss = 0
        self._start: tuple[float, float, float | None] = (0.0, 0.0, None)

    @staticmethod
    async def find_postgres(database_url: str) -> psutil.Process | None:
        """The postmaster, when PostgreSQL runs on this machine and we may see it."""
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                pid = await store.backend_pid(conn)
            parent = psutil.Process(pid).parent()
            return parent if parent and "postgres" in parent.name().lower() else None
        except (psutil.Error, OSError):
            return None
        finally:
            await engine.dispose()

    def _relbank_cpu(self) -> float:
        total = 0.0
        for p in self.relbank:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def _postgres_cpu(self) -> float | None:
        if self.postgres is None:
            return None
        try:
            # Exited backends are in the postmaster's children times once it has reaped them.
            t = self.postgres.cpu_times()
            total: float = t.user + t.system + t.children_user + t.children_system
            for child in self.postgres.children():
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
            return total
        except psutil.Error:
            return None

    def sample(self) -> None:
        rss = 0
        for p in self.relbank:
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)

    def start(self) -> None:
        self.peak_rss = 0
        self.sample()
        self._start = (time.perf_counter(), self._relbank_cpu(), self._postgres_cpu())

    def finish(self, row: Any) -> None:
        """Fill the row's CPU (cores, averaged over the span) and RSS figures."""
        self.sample()
        wall = time.perf_counter() - self._start[0]
        row.cpu_relbank = (self._relbank_cpu() - self._start[1]) / wall if wall else None
        pg_now, pg_then = self._postgres_cpu(), self._start[2]
        if pg_now is not None and pg_then is not None and wall:
            row.cpu_postgres = (pg_now - pg_then) / wall
        row.rss_mb = self.peak_rss / 2**20 if self.relbank else None


@contextlib.asynccontextmanager
async def sampling(usage: Usage, every: float = 0.25) -> AsyncIterator[Usage]:
    """Sample RSS in the background while the block runs."""

    async def loop() -> None:
        while True:
            usage.sample()
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield usage
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def stored_events(database_url: str, source: str) -> int:
    """Events of `source` in the event store."""
    from service.storage.events import event_count

    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await event_count(conn, source=source)
    finally:
        await engine.dispose()
