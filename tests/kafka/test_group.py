"""Several consumer processes in one group: instances added and removed during the stream, and
an instance paused past its session timeout: every event booked once, offsets only forward."""

from __future__ import annotations

import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.support.kafka import Stream, dlq_origins
from tests.support.ledger import (
    applied_offsets,
    assert_ledger_matches,
    assert_offsets_only_moved_forward,
    drop_offset_audit,
    install_offset_audit,
    remove_offset_audit,
    wait_consumed,
)
from tests.support.processes import ConsumerProcess
from tests.support.waiting import PATIENCE, SLOW_TEST_TIMEOUT, wait_for

_ASSIGNED = re.compile(r"consumer: reading (.+)")
_ASSIGNED_NOW = re.compile(r"consumer: assigned (.+)")


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

    await wait_for(moved, within=PATIENCE, what="the group to make progress")


def _has_partitions(process: ConsumerProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        assert process.alive, process.log()[-3000:]
        return bool(_partitions_read(process))

    return check


def _assigned_from_now(process: ConsumerProcess, partitions: int) -> Callable[[], Awaitable[bool]]:
    """A check that holds once the process, from now on, is assigned `partitions` partitions or
    more in one rebalance (it is told its whole assignment each time)."""
    seen = len(process.log())

    async def check() -> bool:
        assert process.alive, process.log()[-3000:]
        return any(
            len(match.group(1).split(", ")) >= partitions
            for match in _ASSIGNED_NOW.finditer(process.log()[seen:])
        )

    return check


# Long on a busy machine: the stream goes on until the scenario is done.
@pytest.mark.slow
@pytest.mark.timeout(SLOW_TEST_TIMEOUT)
async def test_two_and_three_instances_added_and_removed_during_the_stream(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    await install_offset_audit(checker)
    # Streams on until the instances have come and gone, however long that takes here.
    stream = Stream(s, per_second=700, seed=21, customers=300, poison_every=2000)
    a, b, c = (ConsumerProcess(s, logs, name) for name in "abc")
    try:
        stream.start()
        a.start()
        await _progress(checker, s.consumer_group)
        b.start()  # two instances
        await wait_for(_has_partitions(b), within=PATIENCE, what="b to be given partitions")
        await _progress(checker, s.consumer_group)
        c.start()  # three
        await wait_for(_has_partitions(c), within=PATIENCE, what="c to be given partitions")
        await _progress(checker, s.consumer_group)
        a.stop()  # removed cleanly: leaves the group
        await _progress(checker, s.consumer_group)
        b.kill()  # removed by a crash: its session times out
        await _progress(checker, s.consumer_group)
        back = _assigned_from_now(b, 1)
        b.start()  # and back
        await wait_for(back, within=PATIENCE, what="b to be given partitions again")
        await _progress(checker, s.consumer_group)
        await stream.stop()
        await wait_consumed(checker, s.consumer_group, len(stream.records), within=PATIENCE)
        b.stop()
        c.stop()
    except BaseException:
        await drop_offset_audit(checker)
        raise
    finally:
        stream.cancel()
        for process in (a, b, c):
            process.kill()
        await remove_offset_audit(checker)

    # Every instance had partitions at some point, so batches were applied by all three.
    assert _partitions_read(a)
    assert _partitions_read(b)
    assert _partitions_read(c)
    await assert_ledger_matches(checker, stream.booked)
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    assert stream.poison
    assert (await dlq_origins(s)).keys() == stream.dead_letter_origins()


# Long on a busy machine: the stream goes on until the scenario is done.
@pytest.mark.slow
@pytest.mark.timeout(SLOW_TEST_TIMEOUT)
async def test_a_paused_instance_does_not_apply_its_stale_batch(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    await install_offset_audit(checker)
    stream = Stream(s, per_second=600, seed=22, customers=300, poison_every=2000)
    a, b = ConsumerProcess(s, logs, "a"), ConsumerProcess(s, logs, "b")
    try:
        stream.start()
        a.start()
        b.start()
        for process in (a, b):
            await wait_for(
                _has_partitions(process),
                within=PATIENCE,
                what=f"{process.name} to be given partitions",
            )
        await _progress(checker, s.consumer_group)
        # Frozen mid-stream, past its session timeout: b takes its partitions over meanwhile.
        taken_over = _assigned_from_now(b, 3)
        a.signal(signal.SIGSTOP)
        await wait_for(taken_over, within=PATIENCE, what="b to take over a's partitions")
        await _progress(checker, s.consumer_group)
        # Woken, a finds itself out of the group (its batch in hand is stale) and joins again.
        rejoined = _assigned_from_now(a, 1)
        a.signal(signal.SIGCONT)
        await wait_for(rejoined, within=PATIENCE, what="a to join the group again")
        # The woken instance must be a sound member again: alone, it finishes the stream.
        b.stop()
        await stream.stop()
        await wait_consumed(checker, s.consumer_group, len(stream.records), within=PATIENCE)
        a.stop()
    except BaseException:
        await drop_offset_audit(checker)
        raise
    finally:
        stream.cancel()
        a.kill()
        b.kill()
        await remove_offset_audit(checker)

    # A stale batch applied would move an offset backwards (or book an event twice).
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    await assert_ledger_matches(checker, stream.booked)
    assert (await dlq_origins(s)).keys() == stream.dead_letter_origins()
    print("a rolled back a stale batch:", "batch rolled back, not applied" in a.log())
