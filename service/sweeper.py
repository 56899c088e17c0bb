"""The sweeper: applies the status transitions that decay alone brings due (README)."""

from __future__ import annotations

import asyncio
import logging

from service import metrics
from service.logs import failure
from service.pipeline import SWEEP_BATCH
from service.runtime import Runtime

log = logging.getLogger("relbank.sweeper")


async def run_sweeper(rt: Runtime) -> None:
    """Until cancelled: sweep every RELBANK_SWEEP_INTERVAL_SECONDS, at once again while a sweep
    finds a full batch due."""
    interval = rt.settings.sweep_interval_seconds
    while True:
        try:
            raised = await rt.app.sweep()
            metrics.SWEEPER_LAST_SUCCESS.set_to_current_time()
            if len(raised) >= SWEEP_BATCH:
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure(log, "sweep failed; retrying in %ss", exc, interval)
        await asyncio.sleep(interval)
