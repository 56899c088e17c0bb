"""SIGKILL of the consumer process at random moments during a stream, restarted each time:
every event booked exactly once, balances as the reference says, every poison record dead-lettered.
"""

from __future__ import annotations

import asyncio
import random
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

EVENTS = 36_000
KILLS = 9


async def test_sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(
    kafka_settings: Settings, checker: AsyncEngine, logs: Path
) -> None:
    s = kafka_settings
    rng = random.Random(20261123)
    events = make_corpus(EVENTS, customers=400, seed=9)
    records, booked, poison = with_poison(events, every=2500, seed=9)
    await install_offset_audit(checker)
    stream = asyncio.create_task(produce_stream(s, records, per_second=1000))
    consumer = ConsumerProcess(s, logs, "consumer")
    kills = 0
    try:
        for _ in range(KILLS):
            consumer.start()
            if rng.random() < 0.25:
                # While it starts, joins the group or seeks.
                await asyncio.sleep(rng.uniform(0.3, 2.5))
                consumer.kill()
                continue
            before = await applied_offsets(checker, s.consumer_group)

            async def consuming(before: int = before) -> bool:
                assert consumer.alive, consumer.log()[-3000:]
                return await applied_offsets(checker, s.consumer_group) > before

            await wait_for(consuming, within=60, what="the restarted consumer to make progress")
            if stream.done():
                break
            # Somewhere in the catch-up after the restart: usually in the middle of a batch.
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            consumer.kill()
            kills += 1
        placed = await stream
        if not consumer.alive:
            consumer.start()
        await wait_consumed(checker, s.consumer_group, len(records), within=120)
        consumer.stop()
    finally:
        consumer.kill()
        await remove_offset_audit(checker)

    assert kills >= 5, f"the stream ended after {kills} kills while consuming: make it longer"
    await assert_ledger_matches(checker, booked)
    assert await assert_offsets_only_moved_forward(checker, s.consumer_group) > 0
    # At-least-once on the dead-letter topic: every poison record there, with its reason, and
    # nothing else.
    expected = {f"{s.input_topic}/{placed[i][0]}/{placed[i][1]}" for i in poison}
    origins = await dlq_origins(s)
    assert origins.keys() == expected
    assert set(origins.values()) == {"not_json", "conflict"}
