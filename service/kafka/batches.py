"""One fetched batch to the ledger: decode, dead-letter what cannot be accepted, apply the rest.

Dead letters are acknowledged by the dead-letter topic before the transaction that moves the
offset past them commits. Invalid records are produced before the transaction starts; conflicts
(and events the database refuses) are only known inside it, so they are produced from inside it,
just before commit. Either way a failure after the produce and before the commit rolls the offset
back, and the retried batch produces its dead letters again: the dead-letter topic is
at-least-once (consumers of it should dedupe on `relbank-origin`), the ledger is effectively once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from service import metrics, pipeline
from service.application import Relbank
from service.domain.envelope import Event, Reason
from service.kafka import codec, dlq
from service.kafka.partitions import Batch
from service.storage.offsets import Move

log = logging.getLogger("relbank.consumer")


Decoded = Event | codec.Rejection
# Decoding a fetch gives the event loop back this often, so a database answer for the batch in
# flight is not kept waiting for a whole fetch's decoding.
YIELD_EVERY = 100


def decode_record(record: Any, *, received_at: datetime, max_future_skew: timedelta) -> Decoded:
    try:
        return codec.decode(record, received_at=received_at, max_future_skew=max_future_skew)
    except Exception as exc:
        # A bug must not stall the partition: the record goes aside, loudly.
        log.exception("consumer: could not decode %s", dlq.origin(record))
        return codec.Rejection(
            Reason.BAD_DATA.value, f"relbank could not decode this record: {exc!r}"
        )


async def decode_fetched(
    fetched: Mapping[TopicPartition, Sequence[Any]], *, max_future_skew: timedelta
) -> dict[tuple[TopicPartition, int], Decoded]:
    """Every fetched record decoded, by partition and offset (pure work: nothing is applied)."""
    received_at = datetime.now(UTC)
    decoded: dict[tuple[TopicPartition, int], Decoded] = {}
    for tp, records in fetched.items():
        for record in records:
            decoded[tp, record.offset] = decode_record(
                record, received_at=received_at, max_future_skew=max_future_skew
            )
            if len(decoded) % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    return decoded


def split(
    batch: Batch, decoded: Mapping[tuple[TopicPartition, int], Decoded]
) -> tuple[list[Event], list[Any], list[dlq.DeadLetter]]:
    """Valid events (with their records) in partition then offset order, and dead letters."""
    valid: list[Event] = []
    valid_records: list[Any] = []
    letters: list[dlq.DeadLetter] = []
    for tp, records in sorted(batch.records.items()):
        for record in records:
            found = decoded[tp, record.offset]
            if isinstance(found, Event):
                valid.append(found)
                valid_records.append(record)
            else:
                letters.append(dlq.DeadLetter(record, found.reason, found.detail))
    return valid, valid_records, letters


async def apply(
    app: Relbank,
    producer: Any,
    batch: Batch,
    moves: list[Move],
    decoded: Mapping[tuple[TopicPartition, int], Decoded],
    *,
    group: str,
    dlq_topic: str,
) -> None:
    """Apply `batch` (its records `decoded` by `decode_fetched`) with its offset `moves` in one
    transaction; raises `StaleOffsets` (nothing applied) when another consumer moved them
    meanwhile."""
    valid, valid_records, letters = split(batch, decoded)
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
