"""`bench limit` and `bench baseline`: the same workload written two other ways, on scratch
copies of the tables, so the service's figures have a floor and a ceiling from the same run.

limit: the rows the service would write (events, ledger entries, one account upsert per customer
per batch), computed beforehand and written with COPY and nothing else, one transaction per batch.
baseline: a straightforward per-event implementation (ORM, one transaction per event).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import Event
from service.domain.policy import Policy
from service.storage import baseline as orm
from service.storage import bench as store
from service.storage.db import Database
from service.tools.bench import workload
from service.tools.bench.env import Target, Usage
from service.tools.bench.report import Row, percentile, progress


@contextlib.asynccontextmanager
async def _scratch(tgt: Target, mode: str) -> AsyncIterator[tuple[Database, str, Usage]]:
    """One connection, a scratch schema (dropped afterwards), and the PostgreSQL CPU meter."""
    schema = f"relbank_bench_{mode}_{uuid.uuid4().hex[:8]}"
    db = Database.connect(tgt.database_url, pool_size=1)
    usage = Usage([], await Usage.find_postgres(tgt.database_url))

    async def create(conn: AsyncConnection) -> None:
        await store.create_scratch(conn, schema)

    async def drop(conn: AsyncConnection) -> None:
        await store.drop_scratch(conn, schema)

    try:
        await db.transaction(create)
        yield db, schema, usage
    finally:
        await db.transaction(drop)
        await db.dispose()


def _finish(usage: Usage, row: Row) -> Row:
    usage.finish(row)
    row.rss_mb = row.cpu_relbank = None  # the work is in this process, not a relbank server
    return row


async def run_limit(tgt: Target, policy: Policy, *, events: int, customers: int, batch: int) -> Row:
    """Raw COPY of the rows `events` events over `customers` customers produce."""
    data = workload.corpus(policy, events=events, customers=customers, source=tgt.source("limit"))
    batches = list(workload.rows(workload.decoded(data), policy, batch))
    seconds: list[float] = []
    async with _scratch(tgt, "limit") as (db, schema, usage):

        async def prepare(conn: AsyncConnection) -> None:
            await store.prepare_copy(conn)

        await db.transaction(prepare)
        usage.start()
        started = time.perf_counter()
        with progress(len(data), "limit (COPY)") as bar:
            for rows in batches:

                async def work(conn: AsyncConnection, rows: workload.Rows = rows) -> None:
                    await store.copy_batch(conn, schema, rows.events, rows.entries, rows.accounts)

                t0 = time.perf_counter()
                await db.transaction(work)
                seconds.append(time.perf_counter() - t0)
                bar.update(len(rows))
        return _finish(
            usage,
            Row(
                "limit: COPY",
                len(data),
                time.perf_counter() - started,
                percentile(seconds, 0.5),
                percentile(seconds, 0.99),
                note=f"batches of {batch}",
            ),
        )


async def run_baseline(tgt: Target, policy: Policy, *, events: int, customers: int) -> Row:
    """The ORM, one transaction per event."""
    data = workload.corpus(
        policy, events=events, customers=customers, source=tgt.source("baseline")
    )
    decoded = workload.decoded(data)
    seconds: list[float] = []
    async with _scratch(tgt, "baseline") as (db, schema, usage):
        usage.start()
        started = time.perf_counter()
        with progress(len(decoded), "baseline (ORM)") as bar:
            for event in decoded:

                async def work(conn: AsyncConnection, event: Event = event) -> str:
                    async with await orm.session(conn, schema) as session:
                        return await orm.apply_one(session, event, policy)

                t0 = time.perf_counter()
                await db.transaction(work)
                seconds.append(time.perf_counter() - t0)
                bar.update()
        return _finish(
            usage,
            Row(
                "baseline: ORM, 1 event/tx",
                len(decoded),
                time.perf_counter() - started,
                percentile(seconds, 0.5),
                percentile(seconds, 0.99),
            ),
        )
