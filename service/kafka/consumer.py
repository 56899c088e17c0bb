"""Kafka → ledger, effectively once (README): the consumer loop.

Each fetched batch is applied in ONE PostgreSQL transaction together with the next offset of every
partition in it, and the offset moves by compare-and-set: a batch whose stored offset moved on
meanwhile (another instance owns the partition now, or this one was paused past its session and is
a zombie) rolls back and nothing of it is applied. On assignment the consumer seeks to what
PostgreSQL says. The parts: `partitions` (assignment, stored offsets, lost data), `batches`
(decode, dead letters, apply), `prefetch` (the next records fetched and decoded while a batch is
applied), `checkpoint` (offsets to Kafka, for lag tooling only), `members` (several members of
the group in one process, and what they report together).

A poison record never stops its partition: besides invalid envelopes, an event the database
refuses to store is found by applying the batch again event by event in savepoints and
dead-lettered as `bad_data`; a header key that is not UTF-8 (which aiokafka cannot parse) switches
the fetcher to `lenient`'s parser and becomes `bad_headers`.

Failures: the database or the dead-letter topic failing backs off (capped exponential, jitter),
re-reads the stored offsets and says why in /readyz (`consumer`); the broker failing reconnects
with backoff (`kafka`); no progress for RELBANK_CONSUMER_STUCK_SECONDS while there is lag makes
/readyz 503 too. Cancellation (SIGTERM) abandons the batch in flight, whose transaction then rolls
back, and leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from service.errors import summary
from service.kafka import batches, lenient
from service.kafka.batches import Decoded
from service.kafka.checkpoint import KafkaCheckpoint
from service.kafka.client import kafka_kwargs, make_producer
from service.kafka.members import Members
from service.kafka.partitions import PartitionTracker, names
from service.kafka.prefetch import Prefetch, Records
from service.logs import failure
from service.retry import backoff
from service.runtime import Runtime
from service.storage.offsets import StaleOffsets

log = logging.getLogger("relbank.consumer")

# Keys of Runtime.not_ready (shown by /readyz).
READY_KAFKA = "kafka"
READY_CONSUMER = "consumer"
POLL_TIMEOUT_MS = 1000
# A batch that takes longer than this is abandoned (rolled back) and retried: a hung database
# must not hold the rebalance lock for ever, and Kafka drops a member that stops polling.
BATCH_TIMEOUT_SECONDS = 60.0
SYNC_IN_CALLBACK_SECONDS = 5.0
PROBE_EVERY_SECONDS = 5.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaIngest) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.owner.assigned(set(assigned))


class KafkaIngest:
    """One consumer instance: a member of the group, applying batches to the ledger."""

    def __init__(self, rt: Runtime, *, members: Members | None = None, member: int = 0) -> None:
        self.rt = rt
        self.members = members or Members(rt.not_ready, 1)
        self.member = member
        self.settings = rt.settings
        self.consumer: Any = None
        self.producer: Any = None
        self.tracker = PartitionTracker(rt.app, rt.settings.consumer_group)
        self.prefetch = Prefetch(self._fetch, self._decode)
        self.checkpoint = KafkaCheckpoint()
        # Held while a batch is in flight: a rebalance waits for it, so a revoked partition's
        # batch is either committed before the revocation completes or never applied.
        self.lock = asyncio.Lock()
        self.failure: str | None = None
        self.failures = 0
        self.total_lag = 0
        self.last_progress = time.time()

    def _report(self, key: str, reason: str | None) -> None:
        self.members.report(key, self.member, reason)

    def _progressed(self) -> None:
        self.last_progress = time.time()
        self.members.progressed(self.member, self.last_progress)

    # ---- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: connect, consume; on a broker failure reconnect with backoff."""
        self._progressed()
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A session that ran a while before failing starts the backoff again.
                attempt = 1 if time.monotonic() - started > 60 else attempt + 1
                reason = summary(exc)
                self._report(READY_KAFKA, reason)
                delay = backoff(attempt)
                log.error("consumer: Kafka session failed (%s); retrying in %.1fs", reason, delay)
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(s),
            group_id=s.consumer_group,
            enable_auto_commit=False,
            # Only matters before our own seek, or if a broker answers OFFSET_OUT_OF_RANGE: the
            # highwater check of the partition tracker then notices and says so loudly.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            session_timeout_ms=int(s.consumer_session_timeout_seconds * 1000),
            heartbeat_interval_ms=max(100, int(s.consumer_session_timeout_seconds * 1000) // 3),
        )
        producer = make_producer(s)
        self.tracker.start(consumer)
        watchdog: asyncio.Task[None] | None = None
        try:
            await producer.start()
            # Set before start(): the first assignment may arrive while start() is running.
            self.consumer, self.producer = consumer, producer
            consumer.subscribe([s.input_topic], listener=_Listener(self))
            await consumer.start()
            self._report(READY_KAFKA, None)
            log.info(
                "consumer: joined group %s on %s (%s)",
                s.consumer_group,
                s.input_topic,
                s.kafka_bootstrap,
            )
            watchdog = asyncio.create_task(self._watch())
            while True:
                await self._step()
        finally:
            await self.prefetch.cancel()
            if watchdog:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            await self._close(consumer, producer)

    async def _close(self, consumer: Any, producer: Any) -> None:
        """Leave the group (partitions move to the others at once, not after a session timeout)
        and flush the producer; bounded, as the broker may be the thing that is gone."""
        for client in (consumer, producer):
            try:
                async with asyncio.timeout(10):
                    await client.stop()
            except Exception as exc:
                failure(log, "consumer: could not close a Kafka client cleanly", exc)
        self.consumer = self.producer = None
        self.tracker.stop()

    # ---- rebalance -----------------------------------------------------------------------

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            self.tracker.revoked(revoked)
            self.checkpoint.forget(revoked)
            if revoked:
                log.info("consumer: revoked %s", names(revoked))

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            self.tracker.assigned(assigned)
            if assigned:
                log.info("consumer: assigned %s", names(assigned))
        # Sync right away when the database answers (briefly: the group waits for this
        # callback); the poll loop retries otherwise.
        try:
            async with self.lock, asyncio.timeout(SYNC_IN_CALLBACK_SECONDS):
                await self.tracker.sync()
        except Exception as exc:
            log.warning("consumer: could not read stored offsets yet (%s); will retry", exc)

    # ---- the loop ------------------------------------------------------------------------

    async def _step(self) -> None:
        """Sync, fetch, apply one batch. Database and dead-letter failures back off here (the
        group membership stays); errors from the fetch itself end the session."""
        self.tracker.adopt_unknown()
        healthy = True
        if self.tracker.unsynced:
            try:
                async with self.lock, asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                    await self.tracker.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Still poll below (everything unsynced is paused): the group membership and the
                # highwater marks stay current while the database is away.
                await self._failed("reading stored offsets", exc)
                healthy = False
        try:
            fetched = await self.prefetch.next(self.tracker.epoch)
        except UnicodeDecodeError:
            # aiokafka cannot parse a record whose header key is not UTF-8, and would fail on it
            # for ever: parse leniently from now on and fetch again from the stored offsets.
            if not lenient.enable():
                raise
            log.warning(
                "consumer: a record has a header key that is not UTF-8; switching to the lenient "
                "record parser (slower) so it can be dead-lettered"
            )
            async with self.lock:
                self.tracker.resync_all()
            return
        # Before applying: if the batch hangs, the lag it leaves behind is already visible.
        self.total_lag = self.tracker.observe_lag()
        applied = False
        try:
            async with self.lock:
                if not self.prefetch.current(fetched, self.tracker.epoch):
                    # Fetched before positions moved: fetch again from where they stand.
                    self.tracker.rewind()
                    return
                batch = await self.tracker.take(fetched.records)
                if batch.records:
                    # The next records are fetched and decoded while this batch is applied.
                    self.prefetch.start(self.tracker.epoch)
                    moves = batch.moves(self.tracker.parts)
                    async with asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                        await batches.apply(
                            self.rt.app,
                            self.producer,
                            batch,
                            moves,
                            fetched.decoded,
                            group=self.settings.consumer_group,
                            dlq_topic=self.settings.dlq_topic,
                        )
                    self.tracker.advance(moves)
                    self.checkpoint.committed_to_database(moves)
                    applied = True
        except asyncio.CancelledError:
            # Cancellation (SIGTERM) abandons the batch: its transaction rolls back and the next
            # owner of the partitions reads it again.
            raise
        except StaleOffsets as exc:
            log.warning(
                "consumer: batch rolled back, not applied: %s; this instance lost the partitions "
                "(rebalance) or was paused; re-reading stored offsets",
                exc,
            )
            async with self.lock:
                self.tracker.resync_all()
            return
        except Exception as exc:
            await self._failed("applying a batch", exc)
            return
        if healthy:
            if self.failure:
                log.info("consumer: recovered")
            self.failure, self.failures = None, 0
        self.total_lag = self.tracker.observe_lag()
        if applied or (self.total_lag == 0 and not self.tracker.unsynced):
            # Progress: a batch applied, or nothing left to do.
            self._progressed()
        self._refresh_readiness()
        if applied:
            async with self.lock:
                await self.checkpoint.commit(self.consumer)

    async def _fetch(self) -> Records:
        fetched: Records = await self.consumer.getmany(
            timeout_ms=POLL_TIMEOUT_MS, max_records=self.settings.consumer_max_records
        )
        return fetched

    async def _decode(self, fetched: Records) -> Mapping[tuple[TopicPartition, int], Decoded]:
        return await batches.decode_fetched(fetched, max_future_skew=self.settings.max_future_skew)

    async def _failed(self, doing: str, exc: BaseException) -> None:
        self.failures += 1
        self.failure = f"{doing} failed: {summary(exc)}"
        self._report(READY_CONSUMER, self.failure)
        async with self.lock:
            self.tracker.resync_all()
        delay = backoff(self.failures)
        if self.failures == 1:
            failure(log, "consumer: %s failed; retrying in %.1fs", exc, doing, delay)
        else:
            log.error("consumer: %s; retrying in %.1fs", self.failure, delay)
        # Outside the lock: a rebalance may go on meanwhile.
        await asyncio.sleep(delay)

    # ---- health --------------------------------------------------------------------------

    def _refresh_readiness(self) -> None:
        stuck_for = time.time() - self.last_progress
        if self.failure:
            self._report(READY_CONSUMER, self.failure)
        elif stuck_for > self.settings.consumer_stuck_seconds and (
            self.total_lag > 0 or self.tracker.unsynced
        ):
            self._report(
                READY_CONSUMER,
                f"no progress for {stuck_for:.0f}s with {self.total_lag} records of lag",
            )
        else:
            self._report(READY_CONSUMER, None)

    async def _watch(self) -> None:
        """Readiness while the loop may be blocked: stuck detection, and a broker probe."""
        last_probe = 0.0
        while True:
            await asyncio.sleep(1.0)
            self._refresh_readiness()
            if time.monotonic() - last_probe < PROBE_EVERY_SECONDS:
                continue
            last_probe = time.monotonic()
            try:
                async with asyncio.timeout(PROBE_EVERY_SECONDS):
                    await self.consumer.topics()
            except Exception as exc:
                reason = f"broker unreachable: {summary(exc)}"
                if self.members.reason(READY_KAFKA, self.member) != reason:
                    log.warning("consumer: %s", reason)
                self._report(READY_KAFKA, reason)
            else:
                self._report(READY_KAFKA, None)


def members_of(rt: Runtime) -> list[KafkaIngest]:
    """The configured number of group members (`members`), reporting together."""
    count = rt.settings.consumer_members
    members = Members(rt.not_ready, count)
    return [KafkaIngest(rt, members=members, member=m) for m in range(count)]


async def run_members(ingests: list[KafkaIngest]) -> None:
    """Run every member until cancelled, which cancels them all."""
    async with asyncio.TaskGroup() as group:
        for ingest in ingests:
            group.create_task(ingest.run())


async def run_consumer(rt: Runtime) -> None:
    """The background service `relbank serve --role consumer|all` runs when Kafka is set."""
    await run_members(members_of(rt))
