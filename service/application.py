"""The application service: relbank's use cases, each one unit of work.

Every transaction relbank runs is opened here, through `Database.transaction` and its one retry
policy; the HTTP routes, the Kafka consumer, the sweeper, the relay, the CLI and the tools call
these methods and never open one themselves. Reads go through here too, so an adapter needs
nothing but this object.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics, pipeline
from service.customer_reads import CustomerReads
from service.domain.envelope import Event, Reason
from service.domain.ledger import Account, Alert
from service.domain.policy import Policy
from service.domain.simulate import WhatIf
from service.gauges import Gauges
from service.groupcommit import GroupCommit
from service.replay import ReplayReport, replay
from service.simulate import simulate
from service.sinks import Sinks
from service.storage import (
    accounts,
    alerts,
    events,
    locks,
    offsets,
    policies,
    reads,
    sinks,
    webhooks,
)
from service.storage.db import Database, refused_data
from service.storage.offsets import Move, Stored
from service.storage.policies import ProjectionState

log = logging.getLogger("relbank")

# Called inside the transaction of a Kafka batch, just before its commit, with the results of the
# events that must go to the dead-letter topic (index into the batch, result).
BeforeCommit = Callable[[list[tuple[int, pipeline.Result]]], Awaitable[None]]


class Relbank(CustomerReads):
    """The use cases over one database, under the active policy.

    The database names the active policy and ledger generation (`policies.state`); `policy` is
    this instance's copy, which follows the database: every write reads the state under the
    shared projection lock (so it weighs under the policy active when it commits, into the
    active generation), every read and `follow_policy` (polled) adopt a change made elsewhere.
    """

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        # Webhooks and the relays to the alerts topic and webhooks.
        self.sinks = Sinks(db)
        # `activated_at` of the state `policy` was adopted from (None: not yet read).
        self._adopted_at: datetime | None = None
        self.http_group: GroupCommit | None = None

    # ---- the active policy -------------------------------------------------------------------

    async def activate_policy(self) -> None:
        """Record the configured policy as the active one, unless the database has moved on to
        a newer one (then that one is adopted); raises `policies.PolicyMismatch` when the stored
        balances were computed under another half-life."""
        configured = self.policy

        async def work(conn: AsyncConnection) -> None:
            await locks.own_projection(conn)
            self.policy = await policies.activate(conn, configured)

        await self.db.transaction(work)
        if self.policy.version != configured.version:
            log.warning(
                "RELBANK_POLICY is %s, but the database has since made %s active (relbank "
                "replay --policy): following the database",
                configured.version,
                self.policy.version,
            )
        await self.follow_policy()

    async def follow_policy(self) -> Policy:
        """Adopt the policy the database says is active (changed by another process)."""
        async with self.db.reading() as conn:
            policy, _ = await self._active(conn)
        return policy

    async def _active(self, conn: AsyncConnection) -> tuple[Policy, int]:
        """The active policy and ledger generation; adopts the policy when it changed."""
        return await self._adopt(conn, await policies.state(conn))

    async def _adopt(self, conn: AsyncConnection, state: ProjectionState) -> tuple[Policy, int]:
        """The policy and generation of `state` (as the caller read it), adopted if it is new."""
        if state.policy_version is None or state.activated_at is None:
            return self.policy, state.generation
        if self._adopted_at is not None and state.activated_at < self._adopted_at:
            # Read before a change this instance has already adopted: use it, do not go back.
            if state.policy_version == self.policy.version:
                return self.policy, state.generation
            return await policies.load(conn, state.policy_version), state.generation
        if state.activated_at != self._adopted_at:
            adopted = await policies.load(conn, state.policy_version)
            if adopted.version != self.policy.version:
                log.info("policy %s is active now (was %s)", adopted.version, self.policy.version)
            self.policy, self._adopted_at = adopted, state.activated_at
        return self.policy, state.generation

    async def _writing(self, conn: AsyncConnection) -> tuple[Policy, int]:
        """First in every write: hold off a replay until commit, then read what is active."""
        await locks.share_projection(conn)
        return await self._active(conn)

    def group_http_commits(self, *, window: float, max_events: int) -> None:
        """Let concurrent HTTP ingest requests share transactions (`service.groupcommit`): each
        waits up to `window` seconds for others, up to `max_events` in all; 0 turns it off."""
        self.http_group = (
            GroupCommit(self._ingest_http, window=window, max_events=max_events)
            if window > 0
            else None
        )

    # ---- writes ------------------------------------------------------------------------------

    async def ingest(
        self, batch: Sequence[Event], *, path: str, now: datetime | None = None
    ) -> pipeline.Applied:
        """Apply a batch of valid events in one transaction (over HTTP, possibly one shared with
        other requests: `service.groupcommit`); the results once it committed. `now` is the
        present unless history is being seeded, as the demo does."""
        if path == "http" and now is None and self.http_group is not None:
            return await self.http_group.submit(batch)
        return await self._ingest(batch, path, now=now)

    async def _ingest_http(self, batch: Sequence[Event]) -> pipeline.Applied:
        return await self._ingest(batch, "http")

    async def _ingest(
        self, batch: Sequence[Event], path: str, *, now: datetime | None = None
    ) -> pipeline.Applied:
        async def work(conn: AsyncConnection) -> pipeline.Applied:
            return await self._apply(conn, batch, path, *await self._writing(conn), now=now)

        with metrics.APPLY_BATCH_SECONDS.time():
            applied = await self.db.transaction(work)
        self._observe(path, applied, len(batch))
        return applied

    async def ingest_kafka(
        self,
        batch: Sequence[Event],
        *,
        group: str,
        moves: Sequence[Move],
        before_commit: BeforeCommit,
    ) -> pipeline.Applied:
        """Apply a Kafka batch together with its partitions' offset moves, in one transaction.

        The offsets move by compare-and-set first (`StaleOffsets` if another consumer moved them:
        nothing is applied). Conflicts are handed to `before_commit`. When PostgreSQL refuses a
        batch's data, the batch runs again with each event in a savepoint, and the refused ones
        are handed to `before_commit` as `rejected` (`bad_data`) with the conflicts.
        """

        async def work(conn: AsyncConnection) -> pipeline.Applied:
            await offsets.compare_and_set(conn, group, moves)
            if not batch:
                return pipeline.Applied([], [])
            applied = await self._apply(
                conn, batch, "kafka", *await self._writing(conn), balances=False
            )
            await before_commit(_refused(applied.results))
            return applied

        async def one_by_one(conn: AsyncConnection) -> pipeline.Applied:
            await offsets.compare_and_set(conn, group, moves)
            active = await self._writing(conn)
            results: list[pipeline.Result] = []
            alert_kinds: list[str] = []
            for event in batch:
                try:
                    async with conn.begin_nested():
                        one = await self._apply(conn, [event], "kafka", *active, balances=False)
                except DBAPIError as exc:
                    if not refused_data(exc):
                        raise
                    results.append(
                        pipeline.Result(
                            "rejected",
                            event.source,
                            event.id,
                            reason=Reason.BAD_DATA.value,
                            detail=f"the database cannot store this event: {exc.orig}",
                        )
                    )
                    continue
                results += one.results
                alert_kinds += one.alert_kinds
            await before_commit(_refused(results))
            return pipeline.Applied(results, alert_kinds)

        with metrics.APPLY_BATCH_SECONDS.time():
            try:
                applied = await self.db.transaction(work)
            except DBAPIError as exc:
                if not batch or not refused_data(exc):
                    raise
                # Validation let through something PostgreSQL cannot store: find it rather than
                # fail this batch for ever.
                log.error(
                    "the database refused a batch of %d events (%s); applying them one by one "
                    "to set the refused ones aside",
                    len(batch),
                    exc.orig,
                )
                applied = await self.db.transaction(one_by_one)
        self._observe("kafka", applied, len(batch))
        return applied

    async def change_segment(
        self, customer_id: str, segment: str | None, *, now: datetime | None = None
    ) -> tuple[Account, list[str]]:
        async def work(conn: AsyncConnection) -> tuple[Account, list[str]]:
            policy, generation = await self._writing(conn)
            return await pipeline.change_segment(
                conn,
                customer_id,
                segment,
                policy=policy,
                generation=generation,
                now=now,
            )

        account, alert_kinds = await self.db.transaction(work)
        metrics.count_alerts(alert_kinds)
        return account, alert_kinds

    async def sweep(self, now: datetime | None = None) -> list[Alert]:
        """Apply the transitions decay alone has brought due (up to `pipeline.SWEEP_BATCH`)."""
        when = now or datetime.now(UTC)

        async def work(conn: AsyncConnection) -> list[Alert]:
            policy, _ = await self._writing(conn)
            return await pipeline.settle_due(conn, policy, now=when)

        raised = await self.db.transaction(work)
        metrics.count_alerts([a.kind for a in raised])
        return raised

    async def replay(
        self, policy: Policy, *, progress: Callable[[int], object] | None = None
    ) -> ReplayReport:
        """Rebuild every ledger entry, projection and status under `policy` as a new ledger
        generation, and make both active, in one transaction (writers wait; readers see the old
        ledger until it commits). Every running instance follows (see `follow_policy`)."""

        async def work(conn: AsyncConnection) -> ReplayReport:
            return await replay(conn, policy, progress=progress)

        report = await self.db.transaction(work, attempts=1)
        await self.follow_policy()
        return report

    # ---- reads -------------------------------------------------------------------------------

    async def simulate(
        self, policy: Policy, *, progress: Callable[[int], object] | None = None
    ) -> WhatIf:
        """What-if: the event store replayed under `policy` in memory and compared with the
        accounts (`service.domain.simulate`), in one read-only snapshot: nothing is written."""
        async with self.db.snapshot() as conn:
            return await simulate(
                conn, policy, half_life_now=self.policy.half_life_days, progress=progress
            )

    async def ping(self) -> None:
        await self.db.ping()

    async def account(self, customer_id: str) -> Account | None:
        async with self.db.driver() as driver:
            state, found = await reads.account(driver, customer_id)
        if state.activated_at is not None and state.activated_at != self._adopted_at:
            async with self.db.reading() as conn:  # the policy changed: adopt it
                await self._adopt(conn, state)
        return found

    async def at_risk_page(
        self, *, segment: str | None, limit: int, after: accounts.RankKey | None
    ) -> tuple[list[Account], accounts.RankKey | None]:
        async with self.db.reading() as conn:
            state, page = await reads.at_risk_page(conn, segment=segment, limit=limit, after=after)
            await self._adopt(conn, state)
            return page

    async def alerts_after(self, *, after: int, limit: int) -> list[tuple[int, Alert]]:
        async with self.db.reading() as conn:
            return await alerts.after(conn, after=after, limit=limit)

    async def gauges(self, at_risk_limit: int, *, with_topic: bool) -> Gauges:
        """What the database-derived gauges show; `with_topic`: the alerts topic's backlog too."""
        async with self.db.reading() as conn:
            counts = await accounts.counts(conn)
            lowest, _ = await accounts.at_risk_page(
                conn, segment=None, limit=at_risk_limit, after=None
            )
            topic_backlog = await sinks.backlog(conn, sinks.KAFKA) if with_topic else 0
            hooks = await webhooks.states(conn)
        return Gauges(counts, lowest, topic_backlog, {h.webhook.name: h.backlog for h in hooks})

    async def stored_offsets(
        self, group: str, partitions: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], Stored]:
        async with self.db.reading() as conn:
            return await offsets.load(conn, group, partitions)

    async def event_count(self, *, source: str | None = None) -> int:
        """Events in the store (of `source` only, when given)."""
        async with self.db.reading() as conn:
            return await events.event_count(conn, source=source)

    # ---- helpers -----------------------------------------------------------------------------

    async def _apply(
        self,
        conn: AsyncConnection,
        batch: Sequence[Event],
        path: str,
        policy: Policy,
        generation: int,
        *,
        now: datetime | None = None,
        balances: bool = True,
    ) -> pipeline.Applied:
        return await pipeline.apply_batch(
            conn,
            batch,
            policy=policy,
            path=path,
            generation=generation,
            now=now,
            balances=balances,
        )

    @staticmethod
    def _observe(path: str, applied: pipeline.Applied, size: int) -> None:
        if size:
            metrics.APPLY_BATCH_EVENTS.observe(size)
        metrics.count_results(path, [r.outcome for r in applied.results])
        metrics.count_alerts(applied.alert_kinds)


def _refused(results: Sequence[pipeline.Result]) -> list[tuple[int, pipeline.Result]]:
    return [(i, r) for i, r in enumerate(results) if r.outcome in ("conflict", "rejected")]
