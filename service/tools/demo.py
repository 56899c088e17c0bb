"""Demo data. `seed` fills an empty database with the stories of `service.tools.stories` for
`relbank dev --demo`; `demo_events` is a plain random mix, for benchmarks and soak tests.

`seed` plays the stories through the application service on a simulated clock, a day at a time
with the sweeper run at the end of each day, so alerts, `status_since` and decay-driven recoveries
fall when they would have had the service been running all along.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from service.domain.policy import Policy
from service.tools.stories import MONTHS, Step, stories

if TYPE_CHECKING:
    from service.application import Relbank
    from service.settings import Settings


async def play(
    app: Relbank, steps: Sequence[Step], *, max_future_skew: timedelta = timedelta(minutes=5)
) -> None:
    """Apply `steps` through the application service as they would have arrived: a day at a
    time, each day's events at the time of its last one, then the sweeper at the day's end."""
    from service import pipeline
    from service.domain.envelope import Event

    async def flush(batch: list[Step]) -> None:
        if not batch:
            return
        now = max(s.at for s in batch)
        decoded = [
            pipeline.decode(s.event, received_at=now, max_future_skew=max_future_skew)
            for s in batch
        ]
        await app.ingest([d for d in decoded if isinstance(d, Event)], path="http", now=now)
        batch.clear()

    if not steps:
        return
    day = steps[0].at.replace(hour=0, minute=0, second=0)
    i = 0
    while i < len(steps):
        end = day + timedelta(days=1)
        batch: list[Step] = []
        while i < len(steps) and steps[i].at < end:
            step = steps[i]
            if step.event is None:
                if any(s.customer == step.customer for s in batch):  # its events come first
                    await flush(batch)
                await app.change_segment(step.customer, step.segment, now=step.at)
            else:
                batch.append(step)
            i += 1
        await flush(batch)
        for _ in range(20):
            if not await app.sweep(min(end, datetime.now(UTC))):
                break
        day = end


def seed(settings: Settings, policy: Policy, *, via_kafka: bool) -> str:
    """Seed an empty database with the stories: the history through the application service,
    the last day's events to the input topic when Kafka runs. Returns what it did, in words."""
    return asyncio.run(_seed(settings, policy, via_kafka=via_kafka))


async def _seed(settings: Settings, policy: Policy, *, via_kafka: bool) -> str:
    from service.runtime import Runtime

    rt = Runtime.build(settings.model_copy(update={"database_pool_size": 2}), policy)
    try:
        if await rt.app.event_count():
            return "skipped: the data folder already holds events (--reset starts afresh)"
        demo = stories(policy)
        cutoff = datetime.now(UTC) - timedelta(days=1) if via_kafka else None
        live = [s for s in demo.steps if cutoff and s.event and s.at >= cutoff]
        history = [s for s in demo.steps if not (cutoff and s.event and s.at >= cutoff)]
        await play(rt.app, history, max_future_skew=settings.max_future_skew)
        await rt.app.sweep()
        if live:
            from service.kafka.client import produce_events

            await produce_events(settings, [s.event for s in live if s.event])
        counts = (await rt.app.gauges(0, with_topic=False)).counts
    finally:
        await rt.close()
    tail = f", the last day's {len(live)} through Kafka" if live else ""
    return (
        f"{len(demo.events)} events of {len(demo.arcs)} customers over {MONTHS} months{tail}; "
        f"{counts.get('at_risk', 0)} at risk"
    )


def demo_events(
    policy: Policy,
    *,
    customers: int = 300,
    events_per_customer: int = 12,
    days: int = 180,
    seed: int = 7,
    now: datetime | None = None,
    source: str = "demo",
) -> list[dict[str, Any]]:
    """A random mix of CloudEvents for `customers` customers over the last `days` days, oldest
    first: volume for benchmarks, not stories."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    good = [t for t, m in policy.moments.items() if m.weight is not None and m.weight > 0]
    bad = [t for t, m in policy.moments.items() if m.weight is not None and m.weight < 0]
    banded = [t for t, m in policy.moments.items() if m.bands]
    luck_of = {"delighted": 0.85, "steady": 0.65, "rocky": 0.4, "churning": 0.15}
    shares = {"delighted": 0.3, "steady": 0.45, "rocky": 0.17, "churning": 0.08}
    events: list[dict[str, Any]] = []
    for c in range(customers):
        customer = f"cust-{c:05d}"
        luck = luck_of[rng.choices(list(shares), weights=list(shares.values()))[0]]
        for n in range(rng.randint(max(1, events_per_customer // 2), events_per_customer * 3 // 2)):
            at = now - timedelta(seconds=rng.uniform(0, days * 86_400))
            data: dict[str, Any] = {}
            if banded and rng.random() < 0.15:
                type_ = rng.choice(banded)
                moment = policy.moments[type_]
                assert moment.field is not None
                assert moment.bands is not None
                low = min(b.min for b in moment.bands)
                high = max(b.max for b in moment.bands)
                score = rng.gauss(low + (high - low) * luck, (high - low) / 4)
                data[moment.field] = round(min(high, max(low, score)))
            else:
                type_ = rng.choice(good if rng.random() < luck else bad)
                if rng.random() < 0.2:
                    data["magnitude"] = round(rng.uniform(0.5, 2.0), 2)
            event: dict[str, Any] = {
                "specversion": "1.0",
                "id": f"{customer}-{n:04d}",
                "source": source,
                "type": type_,
                "subject": customer,
                "time": at.isoformat().replace("+00:00", "Z"),
            }
            if data:
                event["data"] = data
            events.append(event)
    events.sort(key=lambda e: e["time"])
    return events
