"""Kafka consumer offsets kept in PostgreSQL, moved in the same transaction as the batch they cover.

The stored `next_offset` of a partition is the first offset not yet applied. A batch moves it with
a compare-and-set: it names the value it started from, and if the row holds anything else another
consumer (or an earlier incarnation of this one) moved it meanwhile and the batch must roll back.
Rows are locked in (topic, partition) order, first in the transaction (see `locks` for the
lock order), so two consumers that both believe they own a partition cannot deadlock over it.

Each row also names the log its offset counts in (`log_id`, README): an offset means nothing
in another log (a topic deleted and re-created, a memory-only broker restarted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Move:
    """Move `partition` of `topic` from `expected` (None: no row yet) to `next_offset`, an offset
    in the log `log_id` (None: unknown)."""

    topic: str
    partition: int
    expected: int | None
    next_offset: int
    log_id: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    next_offset: int
    log_id: str | None


class StaleOffsets(Exception):
    """The stored offset of a partition is not the one the batch started from."""

    def __init__(self, stale: Mapping[tuple[str, int], tuple[int | None, int | None]]) -> None:
        self.stale = dict(stale)
        parts = ", ".join(
            f"{t}/{p}: expected {_show(exp)}, found {_show(found)}"
            for (t, p), (exp, found) in sorted(self.stale.items())
        )
        super().__init__(f"stored offsets moved on ({parts})")


def _show(offset: int | None) -> str:
    return "no row" if offset is None else str(offset)


async def _stored(
    conn: AsyncConnection, group: str, keys: list[tuple[str, int]], *, lock: bool
) -> dict[tuple[str, int], Stored]:
    rows = await conn.execute(
        text(
            """
            SELECT o.topic, o.partition, o.next_offset, o.log_id
            FROM consumer_offsets o
            JOIN unnest(CAST(:topic AS text[]), CAST(:partition AS int[])) AS k(topic, partition)
              ON o.topic = k.topic AND o.partition = k.partition
            WHERE o.consumer_group = :group
            ORDER BY o.topic, o.partition
            """
            + (" FOR UPDATE OF o" if lock else "")
        ),
        {"group": group, "topic": [k[0] for k in keys], "partition": [k[1] for k in keys]},
    )
    return {(r.topic, r.partition): Stored(int(r.next_offset), r.log_id) for r in rows}


async def load(
    conn: AsyncConnection, group: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], Stored]:
    """The stored next offset (and its log) of each (topic, partition) that has one."""
    keys = sorted(set(partitions))
    return await _stored(conn, group, keys, lock=False) if keys else {}


async def compare_and_set(conn: AsyncConnection, group: str, moves: Iterable[Move]) -> None:
    """Move every partition's stored offset, or raise `StaleOffsets` having changed nothing
    the caller's rollback would not undo."""
    ordered = sorted(moves, key=lambda m: (m.topic, m.partition))
    if not ordered:
        return
    # Lock the existing rows in (topic, partition) order before anything else is locked.
    rows = await _stored(conn, group, [(m.topic, m.partition) for m in ordered], lock=True)
    stored = {key: row.next_offset for key, row in rows.items()}
    stale = {
        (m.topic, m.partition): (m.expected, stored.get((m.topic, m.partition)))
        for m in ordered
        if stored.get((m.topic, m.partition)) != m.expected
    }
    if stale:
        raise StaleOffsets(stale)
    existing = [m for m in ordered if m.expected is not None]
    if existing:
        await conn.execute(
            text(
                """
                UPDATE consumer_offsets o
                SET next_offset = k.next_offset, log_id = k.log_id, updated_at = now()
                FROM unnest(CAST(:topic AS text[]), CAST(:partition AS int[]),
                            CAST(:next_offset AS bigint[]), CAST(:log_id AS text[]))
                     AS k(topic, partition, next_offset, log_id)
                WHERE o.consumer_group = :group AND o.topic = k.topic
                  AND o.partition = k.partition
                """
            ),
            {
                "group": group,
                "topic": [m.topic for m in existing],
                "partition": [m.partition for m in existing],
                "next_offset": [m.next_offset for m in existing],
                "log_id": [m.log_id for m in existing],
            },
        )
    new = [m for m in ordered if m.expected is None]
    if new:
        # A concurrent first writer of the same row makes this insert wait for it, then find
        # the row taken: that is a lost compare-and-set too (reported as "found no row" since
        # its value is not known here), never an overwrite.
        inserted = await conn.execute(
            text(
                """
                INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset,
                                              log_id)
                SELECT :group, topic, partition, next_offset, log_id
                FROM unnest(CAST(:topic AS text[]), CAST(:partition AS int[]),
                            CAST(:next_offset AS bigint[]), CAST(:log_id AS text[]))
                     AS k(topic, partition, next_offset, log_id)
                ORDER BY topic, partition
                ON CONFLICT (consumer_group, topic, partition) DO NOTHING
                RETURNING topic, partition
                """
            ),
            {
                "group": group,
                "topic": [m.topic for m in new],
                "partition": [m.partition for m in new],
                "next_offset": [m.next_offset for m in new],
                "log_id": [m.log_id for m in new],
            },
        )
        done = {(r.topic, r.partition) for r in inserted}
        lost = {
            (m.topic, m.partition): (None, None) for m in new if (m.topic, m.partition) not in done
        }
        if lost:
            raise StaleOffsets(lost)
