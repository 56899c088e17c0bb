"""The relay publishes alerts to the alerts topic as CloudEvents keyed by customer id, once per
alert, and moves the topic's cursor past them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics, pipeline
from service.domain.envelope import Event
from service.domain.policy import Policy
from service.kafka.relay import run_relay
from service.runtime import Runtime
from service.settings import Settings
from service.storage import sinks
from service.webhook_relay import run_webhooks
from tests.support.app import runtime_for
from tests.support.events import make_event
from tests.support.kafka import read_topic
from tests.support.waiting import wait_for
from tests.webhooks.receiver import Receiver

# Each waits on a real consumer group or a relay's poll loop: the full run only.
pytestmark = pytest.mark.slow


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await sinks.backlog(conn, sinks.KAFKA)


async def _cancel(rt: Runtime, customers: int) -> None:
    """Two cancellations per customer: one at_risk alert each."""
    now = datetime.now(UTC)
    bad = [
        make_event(id=f"cancel-{c}-{i}", subject=f"cust-{c}", type="cancellation.requested")
        for c in range(customers)
        for i in range(2)
    ]
    skew = rt.settings.max_future_skew
    decoded = [pipeline.decode(e, received_at=now, max_future_skew=skew) for e in bad]
    await rt.app.ingest([d for d in decoded if isinstance(d, Event)], path="http")


async def test_alerts_reach_the_alerts_topic_once(
    kafka_settings: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = kafka_settings
    rt = runtime_for(s, engine, default_policy)
    await _cancel(rt, 4)
    assert await _pending(checker) == 4  # one at_risk alert per customer

    relay = asyncio.create_task(run_relay(rt))
    try:

        async def published() -> bool:
            return await _pending(checker) == 0

        await wait_for(published, within=30, what="the alerts to be published")
        await asyncio.sleep(1.5)  # a relay that published twice would have done so by now
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
    assert "relay" not in rt.not_ready

    records = await read_topic(s, s.alerts_topic)
    assert len(records) == 4
    async with checker.connect() as conn:
        alert_ids = {
            str(r.alert_id): r.customer_id
            for r in await conn.execute(text("SELECT alert_id, customer_id FROM alerts"))
        }
    seen = set()
    for record in records:
        event = orjson.loads(record.value)
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert event["type"] == "relbank.account.at_risk"
        assert event["specversion"] == "1.0"
        assert record.key == event["subject"].encode()
        assert alert_ids[event["id"]] == event["subject"]
        assert event["data"]["kind"] == "at_risk"
        seen.add(event["id"])
    assert seen == alert_ids.keys()


async def test_a_failing_webhook_holds_back_nothing_on_the_topic(
    kafka_settings: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = kafka_settings.model_copy(
        update={"webhook_retry_base_seconds": 0.05, "webhook_retry_cap_seconds": 0.1}
    )
    rt = runtime_for(s, engine, default_policy)
    started = time.time()
    with Receiver(lambda n: 503) as receiver:
        await rt.app.sinks.put_webhook("down", url=receiver.url, secret=None, kinds=["at_risk"])
        await _cancel(rt, 3)
        relays = [asyncio.create_task(run(rt)) for run in (run_relay, run_webhooks)]
        try:

            async def published() -> bool:
                return await _pending(checker) == 0 and len(receiver.all()) >= 3

            await wait_for(published, within=30, what="the topic caught up, the webhook failing")
        finally:
            for relay in relays:
                relay.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
    assert len(await read_topic(s, s.alerts_topic)) == 3
    [state] = await rt.app.sinks.webhooks()
    assert state.backlog == 3
    assert state.cursor.last_error == "answered HTTP 503"
    [stamp] = [
        sample.value
        for family in text_string_to_metric_families(metrics.exposition(worker=True).decode())
        for sample in family.samples
        if sample.name == "relbank_relay_last_success_timestamp_seconds"
        and sample.labels == {"sink": "kafka"}
    ]
    assert stamp >= started
