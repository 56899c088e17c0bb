"""The Kafka side of the checkpoint: offsets committed to Kafka for lag tooling only.

PostgreSQL holds the truth (the offsets move in the transaction of their batch); these commits
follow it, at most once a second, best effort.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from service.storage.offsets import Move

log = logging.getLogger("relbank.consumer")
COMMIT_EVERY_SECONDS = 1.0


class KafkaCheckpoint:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, int] = {}
        self._last = 0.0

    def committed_to_database(self, moves: list[Move]) -> None:
        for move in moves:
            self._pending[TopicPartition(move.topic, move.partition)] = move.next_offset

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)

    async def commit(self, consumer: Any) -> None:
        """Offsets to Kafka for the partitions still assigned, if a second has passed."""
        if not self._pending or time.monotonic() - self._last < COMMIT_EVERY_SECONDS:
            return
        assignment = consumer.assignment()
        commit = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._pending.items()
            if tp in assignment
        }
        self._pending.clear()
        self._last = time.monotonic()
        if not commit:
            return
        try:
            async with asyncio.timeout(5):
                await consumer.commit(commit)
        except (KafkaError, TimeoutError, AssertionError) as exc:
            log.debug("consumer: offsets not committed to Kafka (lag tooling only): %s", exc)
