"""Simulation streams the event store: its memory depends on the accounts, not on the events.

The same 400 customers with 15k and then 60k events (3 and 12 pages of the event store): the
peak of what the simulation allocates (tracemalloc) stays under a fixed bound and does not grow
with the event count.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.application import Relbank
from service.domain.policy import Policy
from service.domain.simulate import WhatIf
from tests.support.app import decoded, relbank
from tests.support.policy import make_policy

CUSTOMERS = 400
BOUND = 50 * 2**20
TYPES = ["sla.breached", "promise.kept", "support.resolved_first_contact", "survey.nps", "x.y"]


async def ingest(app: Relbank, start: int, n: int, *, batch: int = 5000) -> None:
    rng = random.Random(start)
    now = datetime.now(UTC)
    for first in range(start, start + n, batch):
        items = [
            {
                "specversion": "1.0",
                "id": f"m{i}",
                "source": "bulk",
                "type": (type_ := rng.choice(TYPES)),
                "subject": f"c{rng.randrange(CUSTOMERS)}",
                "time": (now - timedelta(days=rng.uniform(0, 300))).isoformat(),
                "data": {"score": rng.randrange(11)} if type_ == "survey.nps" else {"note": "x"},
            }
            for i in range(first, min(start + n, first + batch))
        ]
        await app.ingest(decoded(items), path="http")


async def peak(app: Relbank, candidate: Policy) -> tuple[int, WhatIf]:
    """Bytes allocated at the peak of one simulation, above what was live before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        report = await app.simulate(candidate)
        _, top = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return top - before, report


@pytest.mark.slow
@pytest.mark.timeout(1500)
async def test_memory_does_not_grow_with_the_event_count(
    clean: AsyncEngine, default_policy: Policy
) -> None:
    app = relbank(clean, default_policy)
    candidate = make_policy(version="slower", half_life_days=120)
    await ingest(app, 0, 15_000)
    await app.simulate(candidate)  # warm-up: compiled statements, caches
    small, report = await peak(app, candidate)
    assert (report.events, report.accounts) == (15_000, CUSTOMERS)

    await ingest(app, 15_000, 45_000)
    large, report = await peak(app, candidate)
    assert (report.events, report.accounts) == (60_000, CUSTOMERS)

    assert small < BOUND, f"{small / 2**20:.1f} MiB at 15k events"
    assert large < BOUND, f"{large / 2**20:.1f} MiB at 60k events"
    # Four times the events: the same memory, give or take a page's worth of noise.
    assert large < small * 1.3 + 4 * 2**20, (small, large)
