"""Balance history (README `/history`): B(t) at many instants in one pass over the ledger.

The entries are sorted by effective time once; the instants are swept in order while the entries
at or before each instant are folded into a reference pair (README), so every B(t) is the pair
decayed to t. Cost: O(entries log entries + points), however many points are asked for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime

from service.domain.balance import Projection


def instants(start: datetime, end: datetime, points: int) -> list[datetime]:
    """`points` (≥ 2) evenly spaced instants from `start` to `end`, both included, to the
    microsecond (timedelta arithmetic is exact in integers)."""
    if points < 2:
        raise ValueError("a history needs at least 2 points")
    if end < start:
        raise ValueError("a history cannot end before it starts")
    span = end - start
    return [start + span * i // (points - 1) for i in range(points - 1)] + [end]


def history(
    entries: Iterable[tuple[float, datetime]],
    *,
    opened_at: datetime,
    start: datetime | None,
    end: datetime,
    points: int,
    half_life_days: float | None,
) -> list[tuple[datetime, float]]:
    """(t, B(t)) at `points` instants from `start` (default: `opened_at`) to `end`.

    An account opened after `end` (a future-dated first event) charts from `end` itself."""
    at = instants(start or min(opened_at, end), end, points)
    return list(zip(at, balances_at(entries, at, half_life_days), strict=True))


def balances_at(
    entries: Iterable[tuple[float, datetime]],
    at: Sequence[datetime],
    half_life_days: float | None,
) -> list[float]:
    """B(t) for each t of `at` (ascending) from (amount, effective_at) ledger entries."""
    if any(later < earlier for earlier, later in itertools.pairwise(at)):
        raise ValueError("instants must be in ascending order")
    ordered = sorted(entries, key=lambda entry: entry[1])
    projection = Projection()
    folded = 0
    found = []
    for t in at:
        while folded < len(ordered) and ordered[folded][1] <= t:
            amount, effective_at = ordered[folded]
            projection = projection.post(amount, effective_at, half_life_days)
            folded += 1
        found.append(projection.balance_at(t, half_life_days))
    return found
