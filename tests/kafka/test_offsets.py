"""Stored consumer offsets: compare-and-set, the guard against a batch whose partition moved on."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.storage import offsets
from service.storage.offsets import Move, StaleOffsets
from tests.support.waiting import PATIENCE, wait_for


async def _stored(engine: AsyncEngine) -> dict[tuple[str, int], int]:
    async with engine.connect() as conn:
        found = await offsets.load(conn, "g", [("t", 0), ("t", 1), ("u", 0)])
    return {key: row.next_offset for key, row in found.items()}


async def test_moves_every_partition_or_none(clean: AsyncEngine) -> None:
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "g", [Move("t", 1, None, 10), Move("t", 0, None, 5)])
    assert await _stored(clean) == {("t", 0): 5, ("t", 1): 10}
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "g", [Move("t", 0, 5, 7), Move("u", 0, None, 3)])
    assert await _stored(clean) == {("t", 0): 7, ("t", 1): 10, ("u", 0): 3}

    with pytest.raises(StaleOffsets) as raised:
        async with clean.begin() as conn:
            # t/1 is fine, t/0 moved on: nothing moves.
            await offsets.compare_and_set(conn, "g", [Move("t", 1, 10, 12), Move("t", 0, 5, 9)])
    assert raised.value.stale == {("t", 0): (5, 7)}
    assert await _stored(clean) == {("t", 0): 7, ("t", 1): 10, ("u", 0): 3}

    with pytest.raises(StaleOffsets):
        async with clean.begin() as conn:
            # A row this instance believes missing exists: someone else got there first.
            await offsets.compare_and_set(conn, "g", [Move("u", 0, None, 8)])
    # Another group's offsets are its own.
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "other", [Move("t", 0, None, 1)])
    assert await _stored(clean) == {("t", 0): 7, ("t", 1): 10, ("u", 0): 3}


async def wait_until_blocked(engine: AsyncEngine) -> None:
    """Until a transaction of this database waits for a lock (the second writer, on the first's
    row)."""

    async def blocked() -> bool:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return bool(found.scalar_one())

    await wait_for(blocked, within=PATIENCE, what="the second writer to wait for the first")


async def test_two_first_writers_of_a_partition_one_wins(clean: AsyncEngine) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with clean.begin() as conn:
            await offsets.compare_and_set(conn, "g", [Move("t", 0, None, 4)])
            entered.set()
            await release.wait()

    async def second() -> None:
        await entered.wait()
        async with clean.begin() as conn:
            await offsets.compare_and_set(conn, "g", [Move("t", 0, None, 9)])

    winner = asyncio.create_task(first())
    loser = asyncio.create_task(second())
    await entered.wait()
    await wait_until_blocked(clean)  # the second waits on the first's uncommitted row
    release.set()
    await winner
    with pytest.raises(StaleOffsets):
        await loser
    assert await _stored(clean) == {("t", 0): 4}


async def test_two_owners_of_a_stored_partition_one_wins(clean: AsyncEngine) -> None:
    async with clean.begin() as conn:
        await offsets.compare_and_set(conn, "g", [Move("t", 0, None, 4)])
    entered = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with clean.begin() as conn:
            await offsets.compare_and_set(conn, "g", [Move("t", 0, 4, 6)])
            entered.set()
            await release.wait()

    async def second() -> None:
        await entered.wait()
        async with clean.begin() as conn:
            await offsets.compare_and_set(conn, "g", [Move("t", 0, 4, 8)])

    winner = asyncio.create_task(first())
    loser = asyncio.create_task(second())
    await entered.wait()
    await wait_until_blocked(clean)
    release.set()
    await winner
    with pytest.raises(StaleOffsets) as raised:
        await loser
    assert raised.value.stale == {("t", 0): (4, 6)}
    assert await _stored(clean) == {("t", 0): 6}
