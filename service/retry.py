"""Waiting between attempts at something that is down (a broker, the database)."""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Capped exponential backoff with jitter: a fleet that failed together does not retry
    in step."""
    ceiling: float = min(cap, base * 2 ** min(attempt, 30))
    return random.uniform(ceiling / 2, ceiling)
