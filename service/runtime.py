"""The process: settings, the database, the application service, readiness and the background
services of a role. The HTTP adapter, the Kafka adapter, the workers and the tools all depend on
this module; it depends on none of them."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError, ProgrammingError

from service.application import Relbank
from service.domain.policy import Policy
from service.errors import StartupError, summary
from service.retry import backoff
from service.settings import Settings
from service.storage import policies
from service.storage.db import Database, sqlstate

log = logging.getLogger("relbank")

Role = Literal["all", "api", "consumer", "worker"]
ROLES: tuple[Role, ...] = ("all", "api", "consumer", "worker")
READY_POLICY = "policy"
# How often an instance checks which policy is active (a replay elsewhere may have changed it).
FOLLOW_POLICY_SECONDS = 2.0


# The collector's youngest generation is collected once this many more container objects were
# made than freed. Python's 700 sets off dozens of collections per batch of 1000 events (each
# event is a dozen objects alive until its batch commits) and promotes the batch into the older
# generations, whose full collections then cost the Kafka consumer 15-40 ms a batch (measured).
GC_YOUNGEST_THRESHOLD = 50_000


def tune_gc() -> None:
    """Before serving: what startup made (modules, the app, the policy) is frozen out of the
    collector's way for good, and batches no longer set collections off."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)


def _log_fatal(exc: BaseException) -> None:
    log.critical("relbank cannot go on: %s", exc)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    app: Relbank
    role: Role = "all"
    # Component name -> why it is not ready; empty means ready (the database is checked live).
    not_ready: dict[str, str] = field(default_factory=dict)
    # What-if runs in progress: each holds a snapshot and a connection while it runs.
    simulations: int = 0
    # Told of an error that must stop the process (found by a background task).
    on_fatal: Callable[[BaseException], None] = _log_fatal

    @classmethod
    def build(
        cls,
        settings: Settings,
        policy: Policy,
        *,
        role: Role = "all",
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> Runtime:
        db = Database.connect(settings.async_database_url, pool_size=settings.database_pool_size)
        app = Relbank(db, policy)
        app.group_http_commits(
            window=settings.group_commit_window.total_seconds(),
            max_events=settings.group_commit_max_events,
        )
        return cls(settings, app, role, on_fatal=on_fatal or _log_fatal)

    @property
    def policy(self) -> Policy:
        return self.app.policy

    @property
    def db(self) -> Database:
        return self.app.db

    async def activate(self) -> bool:
        """Record the policy as active; False while the database cannot be reached. A policy the
        stored balances do not fit, or a database never migrated, raise `StartupError`."""
        try:
            await self.app.activate_policy()
        except policies.PolicyMismatch as exc:
            raise StartupError(f"RELBANK_POLICY: {exc}") from None
        except ProgrammingError as exc:
            if sqlstate(exc) == "42P01":  # undefined table
                raise StartupError(
                    "the database has no relbank tables: run `relbank migrate` first"
                ) from None
            if sqlstate(exc) == "42703":  # undefined column
                raise StartupError(
                    "the database schema is older than this relbank: run `relbank migrate`"
                ) from None
            if sqlstate(exc) == "42501":  # insufficient privilege
                raise StartupError(
                    "the database role may not use relbank's tables: run relbank as a member of "
                    "relbank_runtime (created by `relbank migrate`, run as the tables' owner)"
                ) from None
            raise
        except (OSError, DBAPIError) as exc:
            reason = summary(exc)
            self.not_ready[READY_POLICY] = f"waiting for PostgreSQL to record the policy ({reason})"
            log.warning("start-up: PostgreSQL does not answer (%s); waiting for it", reason)
            return False
        self.not_ready.pop(READY_POLICY, None)
        return True

    async def start(self, services: list[Service]) -> asyncio.Task[None]:
        """Activate the policy, then run `services` until cancelled. While PostgreSQL is not
        there yet this returns at once and keeps trying in the background (health is served,
        readiness says why); an orchestrator would only restart us into the same wait."""
        ready = await self.activate()
        return asyncio.create_task(self._run(services, activated=ready))

    async def _run(self, services: list[Service], *, activated: bool) -> None:
        try:
            attempt = 0
            while not activated:
                attempt += 1
                await asyncio.sleep(backoff(attempt, cap=30.0))
                activated = await self.activate()
                if activated:
                    log.info(
                        "start-up: PostgreSQL answered; policy %s is active", self.policy.version
                    )
        except StartupError as exc:
            self.on_fatal(exc)
            return
        tasks = [asyncio.create_task(service(self)) for service in [follow_policy, *services]]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                # Not twice: a cancelled gather has cancelled them, and a second cancel would
                # cut short their clean-up (the consumer leaving its group, say).
                if not task.cancelling():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.db.dispose()


# A background service runs until cancelled; it may report readiness problems in not_ready.
Service = Callable[[Runtime], Coroutine[Any, Any, None]]


async def follow_policy(rt: Runtime) -> None:
    """Run by every role: adopt the policy a `relbank replay --policy` made active, so an
    instance that neither reads nor writes meanwhile reports it too (writes and reads adopt it
    at once on their own)."""
    while True:
        await asyncio.sleep(FOLLOW_POLICY_SECONDS)
        try:
            await rt.app.follow_policy()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The database being away is reported by /readyz and whoever needs it.
            log.debug("could not check the active policy: %s", summary(exc))
