"""The outbox relay: alert rows written with their transaction → the alerts topic (DESIGN §4, §6).

A batch of pending rows is locked, produced, acknowledged, marked published and committed. A crash
between the acknowledgement and the commit publishes those rows again: the alerts topic is
at-least-once, and each record's CloudEvents `id` (the alert id) lets a reader drop repeats.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api.context import Context
from service.kafka.client import make_producer
from service.kafka.codec import STRUCTURED_CONTENT_TYPE
from service.retry import backoff
from service.storage import outbox

log = logging.getLogger("relbank.relay")
READY_RELAY = "relay"
BATCH = 500
IDLE_SECONDS = 0.5
PUBLISH_TIMEOUT_SECONDS = 60.0


async def publish_once(conn: AsyncConnection, producer: Any, *, limit: int = BATCH) -> int:
    """Publish up to `limit` pending rows in the caller's transaction; returns how many."""
    if not await outbox.try_lock_relay(conn):
        return 0  # another instance is relaying
    rows = await outbox.pending(conn, limit)
    if not rows:
        return 0
    pending = [
        await producer.send(
            row.topic,
            orjson.dumps(row.payload),
            key=row.key.encode() if row.key is not None else None,
            headers=[("content-type", STRUCTURED_CONTENT_TYPE.encode())],
        )
        for row in rows
    ]
    await asyncio.gather(*pending)
    await outbox.mark_published(conn, [row.outbox_id for row in rows])
    return len(rows)


async def run_relay(ctx: Context) -> None:
    """Until cancelled: publish pending outbox rows; back off while Kafka or PostgreSQL fail."""
    failures = 0
    producer: Any = None
    try:
        while True:
            try:
                if producer is None:
                    producer = make_producer(ctx.settings)
                    await producer.start()
                async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS), ctx.engine.begin() as conn:
                    published = await publish_once(conn, producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                reason = f"publishing alerts failed: {type(exc).__name__}: {exc}".strip()[:300]
                ctx.not_ready[READY_RELAY] = reason
                delay = backoff(failures)
                log.error("relay: %s; retrying in %.1fs", reason, delay)
                if producer is not None and failures >= 3:
                    # A producer that keeps failing is rebuilt; aiokafka reconnects on its own,
                    # but not from every state (e.g. it never got metadata).
                    await _stop(producer)
                    producer = None
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("relay: recovered")
            failures = 0
            ctx.not_ready.pop(READY_RELAY, None)
            if published < BATCH:
                await asyncio.sleep(IDLE_SECONDS)
    finally:
        if producer is not None:
            await _stop(producer)


async def _stop(producer: Any) -> None:
    try:
        async with asyncio.timeout(10):
            await producer.stop()
    except Exception:
        log.warning("relay: could not stop the producer cleanly", exc_info=True)
