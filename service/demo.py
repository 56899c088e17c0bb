"""Synthetic customers and moments: for `relbank dev --demo`, benchmarks and soak tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.policy import Policy

# Customer temperaments: how likely a moment is to be a good one, and how common each is.
_PROFILES = {"delighted": 0.85, "steady": 0.65, "rocky": 0.4, "churning": 0.15}
_SHARES = {"delighted": 0.3, "steady": 0.45, "rocky": 0.17, "churning": 0.08}


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
    """CloudEvents for `customers` customers over the last `days` days, oldest first."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    good = [t for t, m in policy.moments.items() if m.weight is not None and m.weight > 0]
    bad = [t for t, m in policy.moments.items() if m.weight is not None and m.weight < 0]
    banded = [t for t, m in policy.moments.items() if m.bands]
    events: list[dict[str, Any]] = []
    for c in range(customers):
        customer = f"cust-{c:05d}"
        luck = _PROFILES[rng.choices(list(_SHARES), weights=list(_SHARES.values()))[0]]
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
