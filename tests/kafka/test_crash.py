"""SIGKILL of the consumer process at random moments during a stream, restarted each time:
every event booked exactly once, balances as the reference says, every poison record dead-lettered.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.support.kafka import Stream, dlq_origins
from tests.support.ledger import (
    applied_offsets,
    assert_ledger_matches,
    assert_offsets_only_moved_forward,
    install_offset_audit,
    remove_offset_audit,
    wait_consumed,
)
from tests.support.processes import ConsumerProcess
from tests.support.waiting import PATIENCE, SLOW_TEST_TIMEOUT, wait_for

KILLS = 5


# Long on a busy machine: the stream goes on until the scenario is done.
@pytest.mark.slow
@pytest.mark.timeout(SLOW_TEST_TIMEOUT)
async def test_sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    rng = random.Random(20261123)
    await install_offset_audit(checker)
    # Streams on until the consumer was killed KILLS times while consuming, however long that
    # takes on this machine.
    stream = Stream(s, per_second=500, seed=9, customers=400, poison_every=2500)
    consumer = ConsumerProcess(s, logs, "consumer")
    kills = early_kills = 0
    try:
        stream.start()
        while kills < KILLS:
            consumer.start()
            if rng.random() < 0.25 and early_kills < KILLS:
                # While it starts, joins the group or seeks.
                await asyncio.sleep(rng.uniform(0.3, 2.5))
                consumer.kill()
                early_kills += 1
                continue
            before = await applied_offsets(checker, s.consumer_group)

            async def consuming(before: int = before) -> bool:
                assert consumer.alive, consumer.log()[-3000:]
                return await applied_offsets(checker, s.consumer_group) > before

            await wait_for(
                consuming, within=PATIENCE, what="the restarted consumer to make progress"
            )
            # Somewhere in the catch-up after the restart: usually in the middle of a batch.
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            consumer.kill()
            kills += 1
        consumer.start()
        await stream.stop()
        await wait_consumed(checker, s.consumer_group, len(stream.records), within=PATIENCE)
        consumer.stop()
    finally:
        stream.cancel()
        consumer.kill()
        await remove_offset_audit(checker)

    await assert_ledger_matches(checker, stream.booked)
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    # At-least-once on the dead-letter topic: every poison record there, with its reason, and
    # nothing else.
    origins = await dlq_origins(s)
    assert stream.poison
    assert origins.keys() == stream.dead_letter_origins()
    assert set(origins.values()) == {"not_json", "conflict"}
