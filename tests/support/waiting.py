"""Waiting on conditions, never fixed sleeps, and cleaning up what a test started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Killable(Protocol):
    def kill(self) -> None: ...


# Consumer processes and streams a test started: killed after the test whatever happened to it
# (a test stopped by its timeout never runs its `finally`), so none writes into the next test.
LEFTOVERS: list[Killable] = []

# How long a wait on a condition may take on a busy 2-core machine before the test fails (a
# passing run never waits this long: waits poll their condition).
PATIENCE = 180.0

# For a test whose stream runs until its scenario is done (`Stream`).
SLOW_TEST_TIMEOUT = 1200


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.2
) -> None:
    """Poll `check` until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)
