"""Readiness as /readyz shows it: which dependency is down, in words fit for anyone to read.

The components' own reasons (Runtime.not_ready) carry driver messages and are logged where
they arise; here each component gets a fixed sentence, so no SQL or driver text leaks."""

from __future__ import annotations

import asyncio
import logging

from service.errors import summary
from service.runtime import READY_POLICY, Runtime
from service.storage.db import unavailable

log = logging.getLogger("relbank")

PING_TIMEOUT_SECONDS = 2.0
DATABASE = "database"
_PUBLIC = {
    READY_POLICY: "waiting for PostgreSQL to record the active policy",
    "kafka": "the Kafka broker cannot be reached",
    "consumer": "the Kafka consumer is failing or not making progress",
    "relay": "alerts cannot be published to Kafka",
}


def _database_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"PostgreSQL does not answer within {PING_TIMEOUT_SECONDS:g} s"
    if unavailable(exc):
        return "PostgreSQL cannot be reached"
    return "PostgreSQL answers with an error"


class Readiness:
    def __init__(self) -> None:
        self._last_failure: str | None = None

    async def reasons(self, rt: Runtime) -> dict[str, str]:
        """Component → why it is not ready; empty when ready."""
        reasons = {name: _PUBLIC.get(name, "not ready") for name in list(rt.not_ready)}
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await rt.app.ping()
        except Exception as exc:
            reasons[DATABASE] = _database_reason(exc)
            failure = summary(exc)
            if failure != self._last_failure:  # once per change, not once per probe
                log.warning("readiness: the database check failed (%s)", failure)
            self._last_failure = failure
        else:
            self._last_failure = None
        return reasons
