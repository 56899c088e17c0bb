"""Several consumer processes in one group: instances added and removed during the stream, and
an instance paused past its session timeout: every event booked once, offsets only forward."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.kafka.helpers import (
    ConsumerProcess,
    applied_offsets,
    assert_ledger_matches,
    assert_offsets_only_moved_forward,
    dlq_origins,
    install_offset_audit,
    make_corpus,
    produce_stream,
    remove_offset_audit,
    wait_consumed,
    wait_for,
    with_poison,
)

_ASSIGNED = re.compile(r"consumer: reading (.+)")


def _partitions_read(process: ConsumerProcess) -> set[str]:
    """Partitions the process synced and read at any time (from its log)."""
    found: set[str] = set()
    for match in _ASSIGNED.finditer(process.log()):
        found |= {part.split("@")[0] for part in match.group(1).split(", ")}
    return found


async def _progress(checker: AsyncEngine, group: str) -> None:
    before = await applied_offsets(checker, group)

    async def moved() -> bool:
        return await applied_offsets(checker, group) > before

    await wait_for(moved, within=60, what="the group to make progress")


def _has_partitions(process: ConsumerProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(_partitions_read(process))

    return check


async def test_two_and_three_instances_added_and_removed_during_the_stream(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    events = make_corpus(16_000, customers=300, seed=21)
    records, booked, poison = with_poison(events, every=2000, seed=21)
    await install_offset_audit(checker)
    stream = asyncio.create_task(produce_stream(s, records, per_second=700))
    a, b, c = (ConsumerProcess(s, logs, name) for name in "abc")
    try:
        a.start()
        await _progress(checker, s.consumer_group)
        b.start()  # two instances
        await wait_for(
            _has_partitions(b),
            within=30,
            what="b to be given partitions",
        )
        await _progress(checker, s.consumer_group)
        c.start()  # three
        await wait_for(
            _has_partitions(c),
            within=30,
            what="c to be given partitions",
        )
        await _progress(checker, s.consumer_group)
        a.stop()  # removed cleanly: leaves the group
        await _progress(checker, s.consumer_group)
        b.kill()  # removed by a crash: its session times out
        await _progress(checker, s.consumer_group)
        b.start()  # and back
        placed = await stream
        await wait_consumed(checker, s.consumer_group, len(records), within=120)
        b.stop()
        c.stop()
    finally:
        for process in (a, b, c):
            process.kill()
        await remove_offset_audit(checker)

    # Every instance had partitions at some point, so batches were applied by all three.
    assert _partitions_read(a)
    assert _partitions_read(b)
    assert _partitions_read(c)
    await assert_ledger_matches(checker, booked)
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    origins = await dlq_origins(s)
    assert origins.keys() == {f"{s.input_topic}/{placed[i][0]}/{placed[i][1]}" for i in poison}


async def test_a_paused_instance_does_not_apply_its_stale_batch(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    events = make_corpus(12_000, customers=300, seed=22)
    records, booked, poison = with_poison(events, every=2000, seed=22)
    await install_offset_audit(checker)
    stream = asyncio.create_task(produce_stream(s, records, per_second=600))
    a, b = ConsumerProcess(s, logs, "a"), ConsumerProcess(s, logs, "b")
    try:
        a.start()
        b.start()
        for process in (a, b):
            await wait_for(
                _has_partitions(process),
                within=30,
                what=f"{process.name} to be given partitions",
            )
        await _progress(checker, s.consumer_group)
        # Frozen mid-stream, past its session timeout: b takes its partitions over meanwhile.
        a.signal(signal.SIGSTOP)
        await asyncio.sleep(s.consumer_session_timeout_seconds + 4)
        await _progress(checker, s.consumer_group)
        a.signal(signal.SIGCONT)
        await asyncio.sleep(s.consumer_session_timeout_seconds + 2)
        # The woken instance must be a sound member again: alone, it finishes the stream.
        b.stop()
        placed = await stream
        await wait_consumed(checker, s.consumer_group, len(records), within=120)
        a.stop()
    finally:
        a.kill()
        b.kill()
        await remove_offset_audit(checker)

    # A stale batch applied would move an offset backwards (or book an event twice).
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    await assert_ledger_matches(checker, booked)
    origins = await dlq_origins(s)
    assert origins.keys() == {f"{s.input_topic}/{placed[i][0]}/{placed[i][1]}" for i in poison}
    print("a rolled back a stale batch:", "batch rolled back, not applied" in a.log())
