"""One fetched batch to the ledger: decode, dead-letter what cannot be accepted, apply the rest.

Dead letters are acknowledged by the dead-letter topic before the transaction that moves the
offset past them commits. Invalid records are produced before the transaction starts; conflicts
(and events the database refuses) are only known inside it, so they are produced from inside it,
just before commit. Either way a failure after the produce and before the commit rolls the offset
back, and the retried batch produces its dead letters again: the dead-letter topic is
at-least-once (consumers of it should dedupe on `relbank-origin`), the ledger is effectively once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from service import metrics, pipeline
from service.application import Relbank
from service.domain.envelope import Event, Reason
from service.kafka import codec, dlq
from service.kafka.partitions import Batch
from service.storage.offsets import Move

log = logging.getLogger("relbank.consumer")


def decode(
    batch: Batch, *, max_future_skew: timedelta
) -> tuple[list[Event], list[Any], list[dlq.DeadLetter]]:
    """Valid events (with their records) in partition then offset order, and dead letters."""
    received_at = datetime.now(UTC)
    valid: list[Event] = []
    valid_records: list[Any] = []
    letters: list[dlq.DeadLetter] = []
    for _, records in sorted(batch.records.items()):
        for record in records:
            try:
                decoded = codec.decode(
                    record, received_at=received_at, max_future_skew=max_future_skew
                )
            except Exception as exc:
                # A bug must not stall the partition: the record goes aside, loudly.
                log.exception("consumer: could not decode %s", dlq.origin(record))
                decoded = codec.Rejection(
                    Reason.BAD_DATA.value, f"relbank could not decode this record: {exc!r}"
                )
            if isinstance(decoded, Event):
                valid.append(decoded)
                valid_records.append(record)
            else:
                letters.append(dlq.DeadLetter(record, decoded.reason, decoded.detail))
    return valid, valid_records, letters


async def apply(
    app: Relbank,
    producer: Any,
    batch: Batch,
    moves: list[Move],
    *,
    group: str,
    dlq_topic: str,
    max_future_skew: timedelta,
) -> None:
    """Apply `batch` with its offset `moves` in one transaction; raises `StaleOffsets` (nothing
    applied) when another consumer moved them meanwhile."""
    valid, valid_records, letters = decode(batch, max_future_skew=max_future_skew)
    await dlq.publish(producer, dlq_topic, letters)

    async def before_commit(refused: list[tuple[int, pipeline.Result]]) -> None:
        await dlq.publish(
            producer,
            dlq_topic,
            [
                dlq.DeadLetter(
                    valid_records[i], result.reason or Reason.CONFLICT.value, result.detail or ""
                )
                for i, result in refused
            ],
        )

    await app.ingest_kafka(valid, group=group, moves=moves, before_commit=before_commit)
    metrics.count_results("kafka", ["rejected"] * len(letters))
