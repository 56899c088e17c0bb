"""The outbox relay publishes alerts to the alerts topic as CloudEvents keyed by customer id,
once per alert, and marks the rows published."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service import pipeline
from service.api.auth import Authenticator
from service.api.context import Context
from service.domain.envelope import Event
from service.domain.policy import Policy
from service.kafka.relay import run_relay
from service.settings import Settings
from tests.factories import make_event
from tests.kafka.helpers import read_topic, wait_for


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            ).scalar_one()
        )


async def test_alerts_reach_the_alerts_topic_once(
    kafka_settings: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = kafka_settings
    now = datetime.now(UTC)
    bad = [
        make_event(id=f"cancel-{c}-{i}", subject=f"cust-{c}", type="cancellation.requested")
        for c in range(4)
        for i in range(2)
    ]
    decoded = [pipeline.decode(e, received_at=now, max_future_skew=s.max_future_skew) for e in bad]
    async with engine.begin() as conn:
        await pipeline.apply_batch(
            conn,
            [d for d in decoded if isinstance(d, Event)],
            policy=default_policy,
            path="http",
            alerts_topic=s.alerts_topic,
        )
    assert await _pending(checker) == 4  # one at_risk alert per customer

    ctx = Context(s, default_policy, engine, Authenticator(None))
    relay = asyncio.create_task(run_relay(ctx))
    try:

        async def published() -> bool:
            return await _pending(checker) == 0

        await wait_for(published, within=30, what="the outbox to be published")
        await asyncio.sleep(1.5)  # a relay that published twice would have done so by now
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
    assert "relay" not in ctx.not_ready

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
