"""One fetch ahead: while PostgreSQL applies batch N, batch N+1 is fetched and decoded, so the
Python half of a batch overlaps the database half of the one before (issue 8).

Only fetching and decoding happen ahead, and neither applies anything or moves an offset. The
records fetched ahead are taken (`PartitionTracker.take`: assignment, positions, the log check)
and applied with their offsets in one transaction only when their turn comes, under the
consumer's lock, exactly as records fetched at that moment would be; a customer's events keep
their partition's order, as batches are applied one at a time, in fetch order.

Whatever moves a position meanwhile (a seek after a failed or stale batch, a revocation, a
partition paused to be synced) moves the tracker's `epoch` on, and records fetched in an earlier
epoch are thrown away unapplied: they may not follow on from where the partitions stand now,
or come from a log that has since been found replaced. The epoch is compared under the
consumer's lock, right before the records are taken, as the rebalance callbacks move it under
that lock too. The partitions are then sought back to where they stand (the consumer would not
hand out again what it has handed out once), and the next fetch reads from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from service.kafka.batches import Decoded

log = logging.getLogger("relbank.consumer")

Records = Mapping[TopicPartition, Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Fetched:
    """Records of one fetch, each decoded (by partition and offset), and the tracker's epoch
    when the fetch began."""

    epoch: int
    records: Records
    decoded: Mapping[tuple[TopicPartition, int], Decoded]


class Prefetch:
    """At most one fetch (and its decoding) running ahead of the batch being applied."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Records]],
        decode: Callable[[Records], Awaitable[Mapping[tuple[TopicPartition, int], Decoded]]],
    ) -> None:
        self._fetch = fetch
        self._decode = decode
        self._ahead: asyncio.Task[Fetched] | None = None
        self.discarded = 0  # fetches thrown away because their epoch had passed

    def start(self, epoch: int) -> None:
        """Fetch and decode the next records in the background (unless that is under way)."""
        if self._ahead is None:
            self._ahead = asyncio.create_task(self._run(epoch))

    async def _run(self, epoch: int) -> Fetched:
        records = await self._fetch()
        return Fetched(epoch, records, await self._decode(records))

    async def next(self, epoch: int) -> Fetched:
        """The next records: those fetched ahead, or fetched now (in `epoch`)."""
        self.start(epoch)
        assert self._ahead is not None
        try:
            return await self._ahead
        finally:
            self._ahead = None

    def current(self, fetched: Fetched, epoch: int) -> bool:
        """Whether `fetched` may be taken in `epoch` (asked under the consumer's lock, right
        before taking: a rebalance callback may move the epoch on until then). Records of an
        earlier epoch are dropped; the caller seeks back and fetches again."""
        if fetched.epoch == epoch:
            return True
        self.discarded += 1
        log.debug("consumer: records fetched ahead dropped (positions moved meanwhile)")
        return False

    def waiting(self) -> int:
        """Records fetched ahead and decoded, waiting for their turn (for tests)."""
        ahead = self._ahead
        if ahead is None or not ahead.done() or ahead.cancelled() or ahead.exception():
            return 0
        return sum(len(records) for records in ahead.result().records.values())

    async def cancel(self) -> None:
        """Drop whatever is under way (the session ends)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
