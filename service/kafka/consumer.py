"""Kafka → ledger, effectively once (DESIGN §6).

Each fetched batch is applied in ONE PostgreSQL transaction together with the next offset of every
partition in it, and the offset moves by compare-and-set: a batch whose stored offset moved on
meanwhile (another instance owns the partition now, or this one was paused past its session and is
a zombie) rolls back and nothing of it is applied. Kafka's own committed offsets are written after
the database commit for lag tooling only; on assignment the consumer seeks to what PostgreSQL says.

Dead letters: records that cannot be accepted go to the dead-letter topic, acknowledged before the
transaction that moves the offset past them commits. Invalid records are produced before the
transaction starts; conflicts are only known inside it, so they are produced from inside it, just
before commit. Either way a failure after the produce and before the commit rolls the offset back,
and the retried batch produces its dead letters again: the dead-letter topic is at-least-once
(consumers of it should dedupe on `relbank-origin`), the ledger is effectively once.

Broker lost data (stored offset past the end of the partition, e.g. the memory-only embedded
broker restarted while PostgreSQL kept its offsets; or records deleted by retention before they
were read): logged at ERROR and counted in `relbank_consumer_offset_out_of_range_total`, then the
partition is read again from its earliest offset. The offsets of a log that lost data describe
other records, so waiting at the old number would silently skip every new record below it;
re-reading is safe because events are deduplicated by (source, id) and come out `duplicate`.

A poison record never stops its partition: besides invalid envelopes, an event the database
refuses to store (a batch failing with a data or integrity error) is found by applying the batch
again event by event in savepoints and dead-lettered as `bad_data`; a header key that is not UTF-8
(which aiokafka cannot parse) switches the fetcher to `lenient`'s parser and becomes `bad_headers`.

Failures: the database or the dead-letter topic failing backs off (capped exponential, jitter),
re-reads the stored offsets and says why in /readyz (`consumer`); the broker failing reconnects
with backoff (`kafka`); no progress for RELBANK_CONSUMER_STUCK_SECONDS while there is lag makes
/readyz 503 too. Cancellation (SIGTERM) abandons the batch in flight, whose transaction then rolls
back, and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics, pipeline
from service.api.context import Context
from service.domain.envelope import Event, Reason
from service.kafka import codec, dlq, lenient
from service.kafka.client import kafka_kwargs, make_producer
from service.retry import backoff
from service.storage import offsets
from service.storage.db import in_transaction, sqlstate
from service.storage.offsets import Move, StaleOffsets

log = logging.getLogger("relbank.consumer")

# Keys of Context.not_ready (shown by /readyz).
READY_KAFKA = "kafka"
READY_CONSUMER = "consumer"
POLL_TIMEOUT_MS = 1000
# A batch that takes longer than this is abandoned (rolled back) and retried: a hung database
# must not hold the rebalance lock for ever, and Kafka drops a member that stops polling.
BATCH_TIMEOUT_SECONDS = 60.0
SYNC_IN_CALLBACK_SECONDS = 5.0
PROBE_EVERY_SECONDS = 5.0
KAFKA_COMMIT_EVERY_SECONDS = 1.0


@dataclass(slots=True)
class _Partition:
    """What this instance knows of one assigned, synced partition."""

    stored: int | None  # next_offset in PostgreSQL as last read or written here; None: no row
    position: int  # next offset to apply; differs from `stored` only after a lost-data reset
    seeked_at_ms: int  # a highwater from a fetch before this says nothing about `position`
    suspect_at_ms: int | None = None  # first fetch that found the log ending before `position`


@dataclass(slots=True)
class _Batch:
    records: dict[TopicPartition, list[Any]] = field(default_factory=dict)

    def moves(self, parts: Mapping[TopicPartition, _Partition]) -> list[Move]:
        return [
            Move(tp.topic, tp.partition, parts[tp].stored, recs[-1].offset + 1)
            for tp, recs in sorted(self.records.items())
        ]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaIngest) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.owner.assigned(set(assigned))


class KafkaIngest:
    """One consumer instance: a member of the group, applying batches to the ledger."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.consumer: Any = None
        self.producer: Any = None
        self.parts: dict[TopicPartition, _Partition] = {}
        # Assigned, paused until their stored offsets are read (after assignment or a failure).
        self.unsynced: set[TopicPartition] = set()
        # Held while a batch is in flight: a rebalance waits for it, so a revoked partition's
        # batch is either committed before the revocation completes or never applied.
        self.lock = asyncio.Lock()
        # Between a revocation and the next assignment this instance owns nothing, whatever
        # `consumer.assignment()` still says.
        self.rebalancing = False
        self.failure: str | None = None
        self.failures = 0
        self.total_lag = 0
        self.last_progress = time.time()
        self._last_kafka_commit = 0.0
        self._pending_kafka_commit: dict[TopicPartition, int] = {}

    # ---- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: connect, consume; on a broker failure reconnect with backoff."""
        metrics.CONSUMER_LAST_PROGRESS.set(self.last_progress)
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
                reason = f"{type(exc).__name__}: {exc}".strip()[:300]
                self.ctx.not_ready[READY_KAFKA] = reason
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
            # highwater check in `_check_end` then notices and says so loudly.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            session_timeout_ms=int(s.consumer_session_timeout_seconds * 1000),
            heartbeat_interval_ms=max(100, int(s.consumer_session_timeout_seconds * 1000) // 3),
        )
        producer = make_producer(s)
        self.parts.clear()
        self.unsynced.clear()
        self.rebalancing = False
        watchdog: asyncio.Task[None] | None = None
        try:
            await producer.start()
            # Set before start(): the first assignment may arrive while start() is running.
            self.consumer, self.producer = consumer, producer
            consumer.subscribe([s.input_topic], listener=_Listener(self))
            await consumer.start()
            self.ctx.not_ready.pop(READY_KAFKA, None)
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
            except Exception:
                log.warning("consumer: could not close a Kafka client cleanly", exc_info=True)
        self.consumer = self.producer = None
        for tp in list(self.parts) + list(self.unsynced):
            _forget_lag(tp)
        self.parts.clear()
        self.unsynced.clear()

    # ---- rebalance -----------------------------------------------------------------------

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            self.rebalancing = True
            for tp in revoked:
                self.parts.pop(tp, None)
                self.unsynced.discard(tp)
                self._pending_kafka_commit.pop(tp, None)
                _forget_lag(tp)
            if revoked:
                log.info("consumer: revoked %s", _names(revoked))

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            self.rebalancing = False
            # Nothing is fetched for them until their stored offsets are read and sought to.
            for tp in assigned:
                if tp not in self.parts:
                    self.consumer.pause(tp)
                    self.unsynced.add(tp)
            if assigned:
                log.info("consumer: assigned %s", _names(assigned))
        # Sync right away when the database answers (briefly: the group waits for this
        # callback); the poll loop retries otherwise.
        try:
            async with self.lock, asyncio.timeout(SYNC_IN_CALLBACK_SECONDS):
                await self._sync()
        except Exception as exc:
            log.warning("consumer: could not read stored offsets yet (%s); will retry", exc)

    async def _sync(self) -> None:
        """Seek every unsynced assigned partition to its offset stored in PostgreSQL (the earliest
        offset when it has none), then resume it."""
        assignment = set() if self.rebalancing else self.consumer.assignment()
        self.unsynced &= set(assignment)
        tps = sorted(self.unsynced)
        if not tps:
            return
        async with self.ctx.engine.connect() as conn:
            stored = await offsets.load(
                conn, self.settings.consumer_group, [(tp.topic, tp.partition) for tp in tps]
            )
        begin = await self.consumer.beginning_offsets(tps)
        now_ms = int(1000 * time.time())
        for tp in tps:
            offset = stored.get((tp.topic, tp.partition))
            position = begin[tp] if offset is None else offset
            if offset is not None and offset < begin[tp]:
                metrics.OFFSET_OUT_OF_RANGE.labels(topic=tp.topic).inc()
                log.error(
                    "consumer: %s/%d: stored offset %d is before the earliest offset %d: records "
                    "%d..%d were deleted (retention?) before relbank read them and are LOST to it; "
                    "going on from %d",
                    tp.topic,
                    tp.partition,
                    offset,
                    begin[tp],
                    offset,
                    begin[tp] - 1,
                    begin[tp],
                )
                position = begin[tp]
            self.consumer.seek(tp, position)
            self.parts[tp] = _Partition(stored=offset, position=position, seeked_at_ms=now_ms)
            self.unsynced.discard(tp)
            self.consumer.resume(tp)
        log.info(
            "consumer: reading %s",
            ", ".join(f"{tp.topic}/{tp.partition}@{self.parts[tp].position}" for tp in tps),
        )

    def _resync_all(self) -> None:
        """After a failed batch nothing about our positions is certain (the commit may even have
        happened): pause everything and read the stored offsets again before going on."""
        for tp in list(self.parts):
            self.parts.pop(tp)
            if tp in self.consumer.assignment():
                self.consumer.pause(tp)
                self.unsynced.add(tp)

    # ---- the loop ------------------------------------------------------------------------

    async def _step(self) -> None:
        """Sync, fetch, apply one batch. Database and dead-letter failures back off here (the
        group membership stays); errors from the fetch itself end the session."""
        # Safety net: an assigned partition this instance knows nothing of (the assignment
        # callback failed) is treated as newly assigned.
        for tp in () if self.rebalancing else self.consumer.assignment():
            if tp not in self.parts and tp not in self.unsynced:
                self.consumer.pause(tp)
                self.unsynced.add(tp)
        healthy = True
        if self.unsynced:
            try:
                async with self.lock, asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                    await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Still poll below (everything unsynced is paused): the group membership and the
                # highwater marks stay current while the database is away.
                await self._failed("reading stored offsets", exc)
                healthy = False
        try:
            fetched: Mapping[TopicPartition, Sequence[Any]] = await self.consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self.settings.consumer_max_records
            )
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
                self._resync_all()
            return
        # Before applying: if the batch hangs, the lag it leaves behind is already visible.
        self._observe_lag()
        applied = False
        try:
            async with self.lock:
                batch = await self._take(fetched)
                if batch.records:
                    async with asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                        await self._apply(batch)
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
                self._resync_all()
            return
        except Exception as exc:
            await self._failed("applying a batch", exc)
            return
        if healthy:
            if self.failure:
                log.info("consumer: recovered")
            self.failure, self.failures = None, 0
        self._observe_lag()
        if applied or (self.total_lag == 0 and not self.unsynced):
            # Progress: a batch applied, or nothing left to do.
            self.last_progress = time.time()
            metrics.CONSUMER_LAST_PROGRESS.set(self.last_progress)
        self._refresh_readiness()
        if applied:
            async with self.lock:
                await self._commit_to_kafka()

    async def _failed(self, doing: str, exc: BaseException) -> None:
        self.failures += 1
        self.failure = f"{doing} failed: {type(exc).__name__}: {exc}".strip()[:300]
        self.ctx.not_ready[READY_CONSUMER] = self.failure
        async with self.lock:
            self._resync_all()
        delay = backoff(self.failures)
        log.error(
            "consumer: %s; retrying in %.1fs", self.failure, delay, exc_info=self.failures == 1
        )
        # Outside the lock: a rebalance may go on meanwhile.
        await asyncio.sleep(delay)

    async def _take(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> _Batch:
        """The fetched records this instance may apply: of partitions still assigned and synced,
        at or past the position. Also notices a log that ends before the position."""
        assignment = set() if self.rebalancing else self.consumer.assignment()
        reset = set()
        for tp, part in list(self.parts.items()):
            if tp in assignment and await self._check_end(tp, part):
                reset.add(tp)
        batch = _Batch()
        for tp, records in fetched.items():
            known = self.parts.get(tp)
            # A partition just sought back is fetched again from there.
            if known is None or tp not in assignment or tp in reset:
                continue
            kept = [r for r in records if r.offset >= known.position]
            if kept:
                batch.records[tp] = kept
        return batch

    async def _check_end(self, tp: TopicPartition, part: _Partition) -> bool:
        """Whether the partition's log ends before our position (it lost data); if so, log it,
        count it and seek to the earliest offset."""
        highwater = self.consumer.highwater(tp)
        polled_at = self.consumer.last_poll_timestamp(tp)
        if highwater is None or polled_at is None or polled_at < part.seeked_at_ms:
            return False
        if highwater >= part.position:
            part.suspect_at_ms = None
            return False
        # Two fetches after the seek must agree, so one answer in flight across the seek cannot
        # trigger a reset.
        if part.suspect_at_ms is None or polled_at <= part.suspect_at_ms:
            part.suspect_at_ms = polled_at
            return False
        begin = (await self.consumer.beginning_offsets([tp]))[tp]
        metrics.OFFSET_OUT_OF_RANGE.labels(topic=tp.topic).inc()
        log.error(
            "consumer: %s/%d: OFFSET OUT OF RANGE: relbank's next offset is %d but the partition "
            "ends at %d: the broker lost data (restarted without its log?). Reading the partition "
            "again from its earliest offset %d; events already applied come out as duplicates.",
            tp.topic,
            tp.partition,
            part.position,
            highwater,
            begin,
        )
        self.consumer.seek(tp, begin)
        part.position = begin
        part.seeked_at_ms = int(1000 * time.time())
        part.suspect_at_ms = None
        return True

    def _decode(self, batch: _Batch) -> tuple[list[Event], list[Any], list[dlq.DeadLetter]]:
        """Valid events (with their records) in partition then offset order, and dead letters."""
        received_at = datetime.now(UTC)
        valid: list[Event] = []
        valid_records: list[Any] = []
        letters: list[dlq.DeadLetter] = []
        for _, records in sorted(batch.records.items()):
            for record in records:
                try:
                    decoded = codec.decode(
                        record,
                        received_at=received_at,
                        max_future_skew=self.settings.max_future_skew,
                    )
                except Exception as exc:
                    # A bug must not stall the partition: the record goes aside, loudly.
                    log.exception("consumer: could not decode %s", _origin(record))
                    decoded = codec.Rejection(
                        Reason.BAD_DATA.value, f"relbank could not decode this record: {exc!r}"
                    )
                if isinstance(decoded, Event):
                    valid.append(decoded)
                    valid_records.append(record)
                else:
                    letters.append(dlq.DeadLetter(record, decoded.reason, decoded.detail))
        return valid, valid_records, letters

    async def _apply(self, batch: _Batch) -> None:
        s = self.settings
        valid, valid_records, letters = self._decode(batch)
        await dlq.publish(self.producer, s.dlq_topic, letters)
        moves = batch.moves(self.parts)

        async def work(conn: AsyncConnection) -> pipeline.Applied | None:
            # First: the offset rows (lock order, see storage.writes); a moved one aborts all.
            await offsets.compare_and_set(conn, s.consumer_group, moves)
            if not valid:
                return None
            applied = await pipeline.apply_batch(
                conn, valid, policy=self.ctx.policy, path="kafka", alerts_topic=s.alerts_topic
            )
            # Inside the transaction: acknowledged before the commit that moves the offset.
            await dlq.publish(self.producer, s.dlq_topic, _conflicts(valid_records, applied))
            return applied

        async def one_by_one(conn: AsyncConnection) -> pipeline.Applied:
            """The batch again, each event in a savepoint: those the database refuses are
            dead-lettered, the others applied, all in one transaction with the offsets."""
            await offsets.compare_and_set(conn, s.consumer_group, moves)
            results: list[pipeline.Result] = []
            alert_kinds: list[str] = []
            refused: list[dlq.DeadLetter] = []
            for event, record in zip(valid, valid_records, strict=True):
                try:
                    async with conn.begin_nested():
                        one = await pipeline.apply_batch(
                            conn,
                            [event],
                            policy=self.ctx.policy,
                            path="kafka",
                            alerts_topic=s.alerts_topic,
                        )
                except DBAPIError as exc:
                    if not _refused_data(exc):
                        raise
                    detail = f"the database cannot store this event: {exc.orig}"
                    refused.append(dlq.DeadLetter(record, Reason.BAD_DATA.value, detail))
                    results.append(
                        pipeline.Result(
                            "rejected",
                            event.source,
                            event.id,
                            reason=Reason.BAD_DATA.value,
                            detail=detail,
                        )
                    )
                    continue
                results += one.results
                alert_kinds += one.alert_kinds
                refused += _conflicts([record], one)
            await dlq.publish(self.producer, s.dlq_topic, refused)
            return pipeline.Applied(results, alert_kinds)

        try:
            with metrics.APPLY_BATCH_SECONDS.time():
                applied = await in_transaction(self.ctx.engine, work)
        except DBAPIError as exc:
            if not valid or not _refused_data(exc):
                raise
            # Validation let through something PostgreSQL cannot store (a NUL character, say):
            # find it rather than fail this batch for ever.
            log.error(
                "consumer: the database refused a batch of %d events (%s); applying them one by "
                "one to set the refused ones aside",
                len(valid),
                exc.orig,
            )
            applied = await in_transaction(self.ctx.engine, one_by_one)
        for move in moves:
            tp = TopicPartition(move.topic, move.partition)
            part = self.parts[tp]
            part.stored = part.position = move.next_offset
            self._pending_kafka_commit[tp] = move.next_offset
        metrics.count_results("kafka", ["rejected"] * len(letters))
        if applied is not None:
            metrics.APPLY_BATCH_EVENTS.observe(len(valid))
            metrics.count_results("kafka", [r.outcome for r in applied.results])
            metrics.count_alerts(applied.alert_kinds)

    async def _commit_to_kafka(self) -> None:
        """Offsets to Kafka, for lag tooling only (PostgreSQL is the truth); best effort."""
        if not self._pending_kafka_commit:
            return
        if time.monotonic() - self._last_kafka_commit < KAFKA_COMMIT_EVERY_SECONDS:
            return
        assignment = self.consumer.assignment()
        commit = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._pending_kafka_commit.items()
            if tp in assignment
        }
        self._pending_kafka_commit.clear()
        self._last_kafka_commit = time.monotonic()
        if not commit:
            return
        try:
            async with asyncio.timeout(5):
                await self.consumer.commit(commit)
        except (KafkaError, TimeoutError, AssertionError) as exc:
            log.debug("consumer: offsets not committed to Kafka (lag tooling only): %s", exc)

    # ---- health --------------------------------------------------------------------------

    def _observe_lag(self) -> None:
        """Records between each synced partition's position and its highwater mark."""
        assignment = self.consumer.assignment()
        total = 0
        for tp, part in self.parts.items():
            if tp not in assignment:
                continue
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            lag = max(0, highwater - part.position)
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            total += lag
        self.total_lag = total

    def _refresh_readiness(self) -> None:
        stuck_for = time.time() - self.last_progress
        if self.failure:
            self.ctx.not_ready[READY_CONSUMER] = self.failure
        elif stuck_for > self.settings.consumer_stuck_seconds and (
            self.total_lag > 0 or self.unsynced
        ):
            self.ctx.not_ready[READY_CONSUMER] = (
                f"no progress for {stuck_for:.0f}s with {self.total_lag} records of lag"
            )
        else:
            self.ctx.not_ready.pop(READY_CONSUMER, None)

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
                reason = f"broker unreachable: {type(exc).__name__}: {exc}".strip()[:300]
                if self.ctx.not_ready.get(READY_KAFKA) != reason:
                    log.warning("consumer: %s", reason)
                self.ctx.not_ready[READY_KAFKA] = reason
            else:
                self.ctx.not_ready.pop(READY_KAFKA, None)


def _conflicts(records: Sequence[Any], applied: pipeline.Applied) -> list[dlq.DeadLetter]:
    return [
        dlq.DeadLetter(record, result.reason or Reason.CONFLICT.value, result.detail or "")
        for record, result in zip(records, applied.results, strict=True)
        if result.outcome == "conflict"
    ]


def _refused_data(exc: DBAPIError) -> bool:
    """Data exception (22xxx) or integrity violation (23xxx): this data, whenever tried, fails."""
    state = sqlstate(exc)
    return state is not None and state[:2] in ("22", "23")


def _origin(record: Any) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps)) or "nothing"


def _forget_lag(tp: TopicPartition) -> None:
    with contextlib.suppress(KeyError):
        metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))


async def run_consumer(ctx: Context) -> None:
    """The background service `relbank serve --role consumer|all` runs when Kafka is set."""
    await KafkaIngest(ctx).run()
