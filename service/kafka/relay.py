"""The alerts-topic relay: alerts → the alerts topic (README).

The topic is one of the alerts table's sinks (`service.sinks`): a batch of the alerts after its
cursor is produced, acknowledged, and the cursor moved past it in the transaction that holds the
sink. A crash between the acknowledgement and the commit publishes those alerts again: the alerts
topic is at-least-once, and each record's CloudEvents `id` (the alert id) lets a reader drop
repeats.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from service import metrics, wire
from service.domain.ledger import Alert
from service.errors import summary
from service.kafka.client import make_producer
from service.logs import failure
from service.retry import backoff
from service.runtime import Runtime
from service.sinks import Publish
from service.storage.db import unavailable

log = logging.getLogger("relbank.relay")
READY_RELAY = "relay"
BATCH = 500
IDLE_SECONDS = 0.5
PUBLISH_TIMEOUT_SECONDS = 60.0


def publisher(producer: Any, topic: str) -> Publish:
    """Produce alerts to `topic` as CloudEvents keyed by customer id; returns once all are
    acknowledged."""

    async def publish(alerts: list[tuple[int, Alert]]) -> None:
        pending = [
            await producer.send(
                topic,
                orjson.dumps(wire.alert_cloudevent(alert_id, alert)),
                key=alert.customer_id.encode(),
                headers=[("content-type", wire.CLOUDEVENT_CONTENT_TYPE.encode())],
            )
            for alert_id, alert in alerts
        ]
        await asyncio.gather(*pending)

    return publish


async def run_relay(rt: Runtime) -> None:
    """Until cancelled: publish the alerts the topic has not had; back off while Kafka or
    PostgreSQL fail."""
    failures = 0
    producer: Any = None
    try:
        while True:
            try:
                if producer is None:
                    producer = make_producer(rt.settings)
                    await producer.start()
                async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                    published = await rt.app.sinks.publish_alerts(
                        publisher(producer, rt.settings.alerts_topic), limit=BATCH
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if unavailable(exc):
                    # /readyz names the database already: neither Kafka nor the relay is at fault.
                    rt.not_ready.pop(READY_RELAY, None)
                    delay = backoff(failures)
                    log.warning(
                        "relay: the database is unavailable (%s); retrying in %.1fs",
                        summary(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                reason = f"publishing alerts failed: {summary(exc)}"
                rt.not_ready[READY_RELAY] = reason
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
            rt.not_ready.pop(READY_RELAY, None)
            metrics.RELAY_LAST_SUCCESS.labels(sink="kafka").set_to_current_time()
            if published < BATCH:
                await asyncio.sleep(IDLE_SECONDS)
    finally:
        if producer is not None:
            await _stop(producer)


async def _stop(producer: Any) -> None:
    try:
        async with asyncio.timeout(10):
            await producer.stop()
    except Exception as exc:
        failure(log, "relay: could not stop the producer cleanly", exc)
