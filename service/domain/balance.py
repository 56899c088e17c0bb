"""Balance arithmetic (README): exponential decay kept as one reference pair per account.

B(t) = Σ amount · 2^(−(t − effective_at)/h). Because decay is exponential the whole sum collapses
to (ref_balance, ref_time) with B(t) = ref_balance · d(t − ref_time) for t ≥ ref_time, and any
arrival order or batching of the same entries gives the same pair (to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

SECONDS_PER_DAY = 86_400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def decay(elapsed: timedelta, half_life_days: float | None) -> float:
    """d(Δ) = 2^(−Δ/h); 1 without a half-life."""
    if half_life_days is None:
        return 1.0
    return math.pow(2.0, -elapsed.total_seconds() / (half_life_days * SECONDS_PER_DAY))


class Projection(NamedTuple):
    """An account's balance as a reference pair; `ref_time` is None before any entry."""

    ref_balance: float = 0.0
    ref_time: datetime | None = None

    def post(self, amount: float, at: datetime, half_life_days: float | None) -> Projection:
        """Fold in one entry effective at `at`, wherever it falls relative to `ref_time`."""
        if self.ref_time is None:
            return Projection(amount, at)
        if at >= self.ref_time:
            carried = self.ref_balance * decay(at - self.ref_time, half_life_days)
            return Projection(carried + amount, at)
        return Projection(
            self.ref_balance + amount * decay(self.ref_time - at, half_life_days), self.ref_time
        )

    def post_all(
        self, entries: Iterable[tuple[float, datetime]], half_life_days: float | None
    ) -> Projection:
        # Folding the latest entry first keeps every later step on the cheap `at < ref_time` path.
        projection = self
        for amount, at in sorted(entries, key=lambda e: e[1], reverse=True):
            projection = projection.post(amount, at, half_life_days)
        return projection

    def balance_at(self, t: datetime, half_life_days: float | None) -> float:
        """B(t) for t ≥ ref_time (earlier times need the ledger)."""
        if self.ref_time is None:
            return 0.0
        if t < self.ref_time:
            raise ValueError("balance before ref_time needs the ledger")
        return self.ref_balance * decay(t - self.ref_time, half_life_days)


def balance_from_entries(
    entries: Iterable[tuple[float, datetime]], t: datetime, half_life_days: float | None
) -> float:
    """The README formula taken literally (used for point-in-time reads and as the oracle)."""
    return math.fsum(amount * decay(t - at, half_life_days) for amount, at in entries if at <= t)


def next_crossing(
    projection: Projection, threshold: float, half_life_days: float | None
) -> datetime | None:
    """When the decaying balance reaches `threshold`, or None if it never does.

    Decay moves a balance toward 0 and never across it, so a crossing needs a threshold strictly
    between 0 and the current balance: t* = ref_time + h · log2(ref_balance / threshold).
    """
    if half_life_days is None or projection.ref_time is None or threshold == 0:
        return None
    ratio = projection.ref_balance / threshold
    if ratio <= 1.0:
        return None
    days = half_life_days * math.log2(ratio)
    if days * SECONDS_PER_DAY > timedelta.max.total_seconds() / 2:
        return None
    try:
        return projection.ref_time + timedelta(days=days)
    except OverflowError:
        return None


def rank_key(projection: Projection, half_life_days: float | None) -> tuple[int, float]:
    """A time-invariant sort key: ordering accounts by it orders them by B(now), lowest first,
    for every `now` (decay scales all balances by one positive factor and never flips a sign)."""
    b = projection.ref_balance
    if b == 0 or projection.ref_time is None:
        return (0, 0.0)
    sign = 1 if b > 0 else -1
    if half_life_days is None:
        return (sign, b)
    days = (projection.ref_time - EPOCH).total_seconds() / SECONDS_PER_DAY
    magnitude = math.log2(abs(b)) + days / half_life_days
    return (sign, sign * magnitude)
