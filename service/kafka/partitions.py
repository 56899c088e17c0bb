"""The partition tracker: what this consumer instance owns and where it stands in each partition.

On assignment a partition is paused until its offset stored in PostgreSQL is read and sought to
(the earliest offset when there is none). After a failed batch nothing about our positions is
certain (the commit may even have happened), so every partition is paused and synced again.

Stored offsets name the log they count in (`logs`, README). A partition whose log is not the
one its offset was stored for (a topic deleted and re-created, a memory-only broker restarted,
as after every `relbank dev` restart) is read again from its start: expected, so a WARNING,
counted in `relbank_consumer_log_changed_total`. The log is checked on assignment and again
after every fetch, before its records are applied: records fetched from a log that changed
after the check are never applied at an offset meant for the old one. No record is skipped;
re-reading is safe because events are deduplicated by (source, id) and come out `duplicate`.

The same log ending before the stored offset, or starting after it, lost records (retention
deleted them unread; an unclean leader election truncated it): logged at ERROR and counted in
`relbank_consumer_offset_out_of_range_total`, then the partition is read from its earliest offset.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from service import metrics
from service.application import Relbank
from service.kafka.logs import log_ids
from service.storage.offsets import Move

log = logging.getLogger("relbank.consumer")


@dataclass(slots=True)
class Partition:
    """What this instance knows of one assigned, synced partition."""

    stored: int | None  # next_offset in PostgreSQL as last read or written here; None: no row
    position: int  # next offset to apply; differs from `stored` only after a reset
    seeked_at_ms: int  # a highwater from a fetch before this says nothing about `position`
    log_id: str | None  # the log `position` counts in (None: the broker names none)
    suspect_at_ms: int | None = None  # first fetch that found the log ending before `position`


def _changed(known: str | None, current: str | None) -> bool:
    return known is not None and current is not None and known != current


@dataclass(slots=True)
class Batch:
    """Fetched records this instance may apply, by partition, in offset order."""

    records: dict[TopicPartition, list[Any]] = field(default_factory=dict)

    def moves(self, parts: Mapping[TopicPartition, Partition]) -> list[Move]:
        return [
            Move(tp.topic, tp.partition, parts[tp].stored, recs[-1].offset + 1, parts[tp].log_id)
            for tp, recs in sorted(self.records.items())
        ]


class PartitionTracker:
    """Assignment, stored offsets and lost-data detection for one consumer session."""

    def __init__(self, app: Relbank, group: str) -> None:
        self.app = app
        self.group = group
        self.consumer: Any = None
        self.parts: dict[TopicPartition, Partition] = {}
        # Assigned, paused until their stored offsets are read (after assignment or a failure).
        self.unsynced: set[TopicPartition] = set()
        # Between a revocation and the next assignment this instance owns nothing, whatever
        # `consumer.assignment()` still says.
        self.rebalancing = False
        # Moves on with every seek, pause and revocation: records fetched in an earlier epoch
        # may not follow on from where the partitions stand now (`prefetch`).
        self.epoch = 0

    def start(self, consumer: Any) -> None:
        self.epoch += 1
        self.consumer = consumer
        self.parts.clear()
        self.unsynced.clear()
        self.rebalancing = False

    def stop(self) -> None:
        for tp in list(self.parts) + list(self.unsynced):
            self._forget_lag(tp)
        self.parts.clear()
        self.unsynced.clear()
        self.consumer = None

    def assignment(self) -> set[TopicPartition]:
        return set() if self.rebalancing else set(self.consumer.assignment())

    def revoked(self, revoked: set[TopicPartition]) -> None:
        self.epoch += 1
        self.rebalancing = True
        for tp in revoked:
            self.parts.pop(tp, None)
            self.unsynced.discard(tp)
            self._forget_lag(tp)

    def assigned(self, assigned: set[TopicPartition]) -> None:
        self.rebalancing = False
        # Nothing is fetched for them until their stored offsets are read and sought to.
        for tp in assigned:
            if tp not in self.parts:
                self._pause(tp)

    def adopt_unknown(self) -> None:
        """Safety net: an assigned partition this instance knows nothing of (the assignment
        callback failed) is treated as newly assigned."""
        for tp in self.assignment():
            if tp not in self.parts and tp not in self.unsynced:
                self._pause(tp)

    def resync_all(self) -> None:
        """Pause everything and read the stored offsets again before going on."""
        assignment = set(self.consumer.assignment())
        for tp in list(self.parts):
            self.parts.pop(tp)
            if tp in assignment:
                self._pause(tp)

    def rewind(self) -> None:
        """Seek every synced partition back to its position: records fetched past it were
        dropped unapplied (`prefetch`), and the consumer would not hand them out again."""
        assignment = set(self.consumer.assignment())
        for tp, part in self.parts.items():
            if tp in assignment:
                self._seek(tp, part, part.position)

    def _pause(self, tp: TopicPartition) -> None:
        self.epoch += 1
        self.consumer.pause(tp)
        self.unsynced.add(tp)

    async def sync(self) -> None:
        """Seek every unsynced assigned partition to its offset stored in PostgreSQL (the
        earliest offset when it has none, or when it counts in another log), then resume it."""
        self.unsynced &= self.assignment()
        tps = sorted(self.unsynced)
        if not tps:
            return
        stored = await self.app.stored_offsets(self.group, [(tp.topic, tp.partition) for tp in tps])
        begin = await self.consumer.beginning_offsets(tps)
        logs = await log_ids(self.consumer._client, {tp.topic for tp in tps})
        now_ms = int(1000 * time.time())
        for tp in tps:
            row = stored.get((tp.topic, tp.partition))
            current = logs.get(tp.topic)
            offset = None if row is None else row.next_offset
            position = begin[tp] if offset is None else offset
            if row is not None and _changed(row.log_id, current):
                self._log_changed(tp, row.log_id, current, begin[tp])
                position = begin[tp]
            elif offset is not None and offset < begin[tp]:
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
            # A broker that names no log now: keep the stored name, checked again per batch.
            known = current if current is not None or row is None else row.log_id
            self.epoch += 1
            self.consumer.seek(tp, position)
            self.parts[tp] = Partition(offset, position, now_ms, known)
            self.unsynced.discard(tp)
            self.consumer.resume(tp)
        log.info(
            "consumer: reading %s",
            ", ".join(f"{tp.topic}/{tp.partition}@{self.parts[tp].position}" for tp in tps),
        )

    async def take(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> Batch:
        """The fetched records this instance may apply: of partitions still assigned and synced,
        at or past the position, from the log the position counts in. Also notices a log that
        changed, and one that ends before the position."""
        assignment = self.assignment()
        live = {tp: part for tp, part in self.parts.items() if tp in assignment}
        suspects = {tp for tp, part in live.items() if self._ends_before(tp, part)}
        check = suspects | {tp for tp, records in fetched.items() if records and tp in live}
        reset = await self._check_logs({tp: live[tp] for tp in check})
        for tp in sorted(suspects - reset):
            await self._lost(tp, live[tp])
            reset.add(tp)
        batch = Batch()
        for tp, records in fetched.items():
            known = live.get(tp)
            # A partition just sought back is fetched again from there.
            if known is None or tp in reset:
                continue
            kept = [r for r in records if r.offset >= known.position]
            if kept:
                batch.records[tp] = kept
        return batch

    def advance(self, moves: Iterable[Move]) -> None:
        """The batch of `moves` committed: that is where the partitions stand now."""
        for move in moves:
            part = self.parts[TopicPartition(move.topic, move.partition)]
            part.stored = part.position = move.next_offset

    async def _check_logs(self, parts: Mapping[TopicPartition, Partition]) -> set[TopicPartition]:
        """Ask the broker which log each partition's topic has now (after the fetch, so a fetch
        from a log that changed is caught); the partitions sought elsewhere as a result."""
        if not parts:
            return set()
        logs = await log_ids(self.consumer._client, {tp.topic for tp in parts})
        reset = set()
        for tp, part in sorted(parts.items()):
            current = logs.get(tp.topic)
            if _changed(part.log_id, current):
                begin = (await self.consumer.beginning_offsets([tp]))[tp]
                self._log_changed(tp, part.log_id, current, begin)
                self._seek(tp, part, begin)
                part.log_id = current
                reset.add(tp)
            elif current is None and part.log_id is not None:
                # The broker does not say which log this is now (the topic being re-created?):
                # apply nothing of it until it does.
                self._seek(tp, part, part.position)
                reset.add(tp)
            elif part.log_id is None:
                part.log_id = current
        return reset

    def _log_changed(
        self, tp: TopicPartition, stored_in: str | None, current: str | None, begin: int
    ) -> None:
        metrics.LOG_CHANGED.labels(topic=tp.topic).inc()
        log.warning(
            "consumer: %s/%d: the log behind the topic is not the one relbank's offsets count in "
            "(%s, now %s): the topic was re-created or the broker restarted empty. Reading it "
            "from its start (offset %d); events already applied come out as duplicates.",
            tp.topic,
            tp.partition,
            stored_in,
            current,
            begin,
        )

    def _ends_before(self, tp: TopicPartition, part: Partition) -> bool:
        """Whether two fetches since the last seek found the log ending before our position."""
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
        return True

    async def _lost(self, tp: TopicPartition, part: Partition) -> None:
        """The log (the same one) ends before our position: it lost data. Say so loudly, count
        it and read it from its earliest offset."""
        begin = (await self.consumer.beginning_offsets([tp]))[tp]
        metrics.OFFSET_OUT_OF_RANGE.labels(topic=tp.topic).inc()
        log.error(
            "consumer: %s/%d: OFFSET OUT OF RANGE: relbank's next offset is %d but the partition "
            "ends at %d: the broker lost data. Reading the partition again from its earliest "
            "offset %d; events already applied come out as duplicates.",
            tp.topic,
            tp.partition,
            part.position,
            self.consumer.highwater(tp),
            begin,
        )
        self._seek(tp, part, begin)

    def _seek(self, tp: TopicPartition, part: Partition, offset: int) -> None:
        self.epoch += 1
        self.consumer.seek(tp, offset)
        part.position = offset
        part.seeked_at_ms = int(1000 * time.time())
        part.suspect_at_ms = None

    def observe_lag(self) -> int:
        """Records between each synced partition's position and its highwater mark; the total."""
        assignment = set(self.consumer.assignment())
        total = 0
        for tp, part in self.parts.items():
            if tp not in assignment:
                continue
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            lag = max(0, highwater - part.position)
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            _lag_shown_by[tp] = self
            total += lag
        return total

    def _forget_lag(self, tp: TopicPartition) -> None:
        """Remove the partition's lag series, unless another member (of this process) set it
        since: in a rebalance the new owner may report before the old one lets go."""
        if _lag_shown_by.get(tp) is not self:
            return
        del _lag_shown_by[tp]
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))


# Which member last set each partition's lag series (the gauge is the process's, shared).
_lag_shown_by: dict[TopicPartition, PartitionTracker] = {}


def names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps)) or "nothing"
