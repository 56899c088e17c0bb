"""The dead-letter topic (README): the original record plus why and where from."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from service import metrics
from service.kafka import lenient
from service.kafka.codec import Headers, RecordLike

ERROR_HEADER = "relbank-error"
DETAIL_HEADER = "relbank-error-detail"
ORIGIN_HEADER = "relbank-origin"
_OURS = {ERROR_HEADER, DETAIL_HEADER, ORIGIN_HEADER}
# Headers are not meant for essays; the full detail of a too-large record is not needed.
_MAX_DETAIL_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: RecordLike
    reason: str
    detail: str

    @property
    def origin(self) -> str:
        return origin(self.record)

    def headers(self) -> Headers:
        # A record re-driven from the dead-letter topic carries our headers already: replace them.
        # A key that is not UTF-8 cannot be sent as it was: its bytes are kept escaped (\xNN).
        kept = [
            (lenient.printable(k), v if v is not None else b"")
            for k, v in self.record.headers
            if k not in _OURS
        ]
        return [
            *kept,
            (ERROR_HEADER, self.reason.encode()),
            (DETAIL_HEADER, _cut(self.detail, _MAX_DETAIL_BYTES)),
            (ORIGIN_HEADER, self.origin.encode()),
        ]


def origin(record: RecordLike) -> str:
    """Where a record came from, as the `relbank-origin` header says it: topic/partition/offset."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def _cut(text: str, limit: int) -> bytes:
    """UTF-8 of `text`, at most `limit` bytes, cut on a character boundary."""
    return text.encode()[:limit].decode("utf-8", "ignore").encode()


async def publish(producer: AIOKafkaProducer, topic: str, letters: Sequence[DeadLetter]) -> None:
    """Produce every dead letter and wait until each is acknowledged: only then may an offset
    move past the records they stand for."""
    if not letters:
        return
    pending: list[asyncio.Future[Any]] = [
        await producer.send(
            topic, letter.record.value, key=letter.record.key, headers=letter.headers()
        )
        for letter in letters
    ]
    await asyncio.gather(*pending)
    for letter in letters:
        metrics.DLQ.labels(reason=letter.reason).inc()
