"""Several members of the consumer group in one process: they share the partitions, apply every
event once, and report their readiness and progress together."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.application import Relbank
from service.domain.policy import Policy
from service.kafka.consumer import READY_CONSUMER, READY_KAFKA, members_of, run_members
from service.kafka.members import Members
from service.kafka.partitions import Partition, PartitionTracker
from service.settings import Settings
from tests.support.app import runtime_for
from tests.support.corpus import make_corpus
from tests.support.kafka import encode_mixed, produce_stream
from tests.support.ledger import assert_ledger_matches, wait_consumed
from tests.support.waiting import PATIENCE, wait_for


def test_one_member_reports_as_the_consumer_always_did() -> None:
    not_ready: dict[str, str] = {}
    members = Members(not_ready, 1)
    members.report(READY_CONSUMER, 0, "applying a batch failed: boom")
    assert not_ready == {READY_CONSUMER: "applying a batch failed: boom"}
    members.report(READY_CONSUMER, 0, None)
    assert not_ready == {}


def test_a_member_that_recovers_does_not_clear_another_ones_failure() -> None:
    not_ready: dict[str, str] = {}
    members = Members(not_ready, 3)
    members.report(READY_KAFKA, 0, "broker unreachable")
    members.report(READY_KAFKA, 2, "broker unreachable")
    assert not_ready[READY_KAFKA] == "member 1: broker unreachable; member 3: broker unreachable"
    members.report(READY_KAFKA, 0, None)
    assert not_ready[READY_KAFKA] == "member 3: broker unreachable"
    members.report(READY_KAFKA, 1, None)  # one that had nothing to say
    assert not_ready[READY_KAFKA] == "member 3: broker unreachable"
    members.report(READY_KAFKA, 2, None)
    assert READY_KAFKA not in not_ready


def test_the_progress_gauge_is_the_oldest_members_progress() -> None:
    members = Members({}, 2)
    members.progressed(0, 1_000.0)
    members.progressed(1, 2_000.0)
    assert metrics.CONSUMER_LAST_PROGRESS._value.get() == 1_000.0
    members.progressed(0, 3_000.0)  # the busy one moves on; the other is the one to watch
    assert metrics.CONSUMER_LAST_PROGRESS._value.get() == 2_000.0


class Assigned:
    """What a tracker asks of its consumer to report lag: assignment and highwater marks."""

    def __init__(self, assigned: set[TopicPartition], highwater: int) -> None:
        self.assigned, self.end = assigned, highwater

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int:
        return self.end


def lag_series(tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value(
        "relbank_consumer_lag_records", {"topic": tp.topic, "partition": str(tp.partition)}
    )


def test_a_member_that_lets_go_of_a_partition_late_leaves_its_new_owners_lag() -> None:
    tp = TopicPartition("relbank.lag-owner", 0)
    old, new = (
        PartitionTracker(cast(Relbank, None), "g"),
        PartitionTracker(cast(Relbank, None), "g"),
    )
    for tracker, position in ((old, 90), (new, 95)):
        tracker.start(Assigned({tp}, highwater=100))
        tracker.parts[tp] = Partition(
            stored=position, position=position, seeked_at_ms=0, log_id=None
        )

    old.observe_lag()
    assert lag_series(tp) == 10
    new.observe_lag()  # the new owner reports before the old one has let go
    assert lag_series(tp) == 5
    old.revoked({tp})
    assert lag_series(tp) == 5
    new.revoked({tp})
    assert lag_series(tp) is None


@pytest.mark.slow
async def test_members_share_the_partitions_and_apply_every_event_once(
    kafka_settings: Settings, engine: AsyncEngine, checker: AsyncEngine, default_policy: Policy
) -> None:
    s = kafka_settings.model_copy(update={"consumer_members": 3})
    events = make_corpus(600, customers=40, seed=71)
    await produce_stream(s, encode_mixed(events), per_second=1e9)
    rt = runtime_for(s, engine, default_policy)
    await rt.app.activate_policy()
    ingests = members_of(rt)
    assert len(ingests) == 3
    task = asyncio.create_task(run_members(ingests))
    try:
        everything = {TopicPartition(s.input_topic, p) for p in range(3)}

        async def shared() -> bool:
            owned = [set(i.tracker.parts) for i in ingests]
            return all(len(o) == 1 for o in owned) and set().union(*owned) == everything

        await wait_for(shared, within=PATIENCE, what="each member to own one partition")
        await wait_consumed(checker, s.consumer_group, len(events), within=PATIENCE)
        assert READY_CONSUMER not in rt.not_ready
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await assert_ledger_matches(checker, events)
