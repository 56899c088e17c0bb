"""Poison records of every kind land in the dead-letter topic, with the right reason and origin,
and never stop the partition: the good records around them are applied."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.domain.policy import Policy
from service.kafka import codec, lenient
from service.settings import Settings
from tests.support.corpus import make_corpus
from tests.support.kafka import dead_letters, read_topic, running_consumer
from tests.support.ledger import assert_ledger_matches, wait_consumed

# Each waits on a real consumer group or a relay's poll loop: the full run only.
pytestmark = pytest.mark.slow

Headers = list[tuple[str, bytes]]
STRUCTURED: Headers = [("content-type", b"application/cloudevents+json")]


def _event(id: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": "poison-test",
        "type": "support.resolved_first_contact",
        "subject": "cust-poison",
        "time": (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def _binary(event: dict[str, Any], **header_changes: bytes) -> tuple[bytes | None, Headers]:
    _, value, headers = codec.encode_binary(event)
    headers = [(k, header_changes.get(k, v)) for k, v in headers]
    return value, headers


def _poison() -> list[tuple[str, bytes | None, Headers]]:
    """(expected reason, value, headers) of one record of every kind that must be refused."""
    too_big = _event("p-big", data={"pad": "x" * 70_000})
    bad_utf8_value, bad_utf8_headers = _binary(_event("p-utf8"), ce_id=b"\xff\xfe-id")
    dup_value, dup_headers = _binary(_event("p-dup"))
    _, text_headers = _binary(_event("p-text"))
    _, broken_headers = _binary(_event("p-brokenjson", data={"a": 1}))
    return [
        ("not_json", b"{this is not json", STRUCTURED),
        ("not_json", b"", []),
        ("not_json", None, STRUCTURED),
        ("not_object", b"[1, 2, 3]", STRUCTURED),
        ("missing_attribute", orjson.dumps(_event("p-nosubject", subject=None)), STRUCTURED),
        ("bad_specversion", orjson.dumps(_event("p-spec", specversion="0.3")), STRUCTURED),
        ("bad_attribute", orjson.dumps(_event("x" * 300)), STRUCTURED),
        ("bad_subject", orjson.dumps(_event("p-subject", subject="cust\x07bell")), []),
        ("bad_time", orjson.dumps(_event("p-time", time="yesterday")), STRUCTURED),
        (
            "future_time",
            orjson.dumps(
                _event("p-future", time=(datetime.now(UTC) + timedelta(days=1)).isoformat())
            ),
            STRUCTURED,
        ),
        ("bad_data", orjson.dumps(_event("p-data", data="a string")), STRUCTURED),
        ("bad_magnitude", orjson.dumps(_event("p-mag", data={"magnitude": 5000})), STRUCTURED),
        ("reserved_source", orjson.dumps(_event("p-reserved", source="relbank")), STRUCTURED),
        ("too_large", orjson.dumps(too_big), STRUCTURED),
        ("too_large", *_binary(too_big)),
        ("bad_headers", bad_utf8_value, bad_utf8_headers),
        ("bad_headers", dup_value, [*dup_headers, ("ce_type", b"other.type")]),
        (
            "bad_headers",
            dup_value,
            [(k, v) for k, v in dup_headers if k != "ce_source"]
            + [
                ("ce_source", None)  # type: ignore[list-item]
            ],
        ),
        ("bad_data", b"plain words", [*text_headers, ("content-type", b"text/plain")]),
        ("not_json", b"{broken", [*broken_headers, ("content-type", b"application/json")]),
        ("missing_attribute", *_binary(_event("p-binary-notime", time=None))),
        # Valid JSON that PostgreSQL cannot store (jsonb has no NUL character).
        ("bad_data", orjson.dumps(_event("p-nul", data={"note": "a\u0000b"})), STRUCTURED),
    ]


async def _produce(
    producer: AIOKafkaProducer, topic: str, key: bytes | None, value: bytes | None, headers: Headers
) -> tuple[int, int]:
    metadata = await (await producer.send(topic, value, key=key, headers=headers))
    return metadata.partition, metadata.offset


async def test_every_kind_of_poison_lands_in_the_dlq_and_the_rest_is_applied(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
) -> None:
    s = kafka_settings
    good = make_corpus(400, customers=12, seed=5, prefix="good-")
    poison = _poison()
    reasons_before = {
        reason: metrics.DLQ.labels(reason=reason)._value.get() for reason, *_ in poison
    }
    conflict_reason_before = metrics.DLQ.labels(reason="conflict")._value.get()
    expected: dict[str, tuple[str, bytes | None, bytes | None, Headers]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    records = 0
    try:
        async with running_consumer(s, engine, default_policy):
            # Good and poison interleaved on every partition (keys spread them).
            for i, event in enumerate(good):
                key, value, headers = (codec.encode_binary if i % 2 else codec.encode_structured)(
                    event
                )
                await _produce(producer, s.input_topic, key, value, headers)
                records += 1
                if i % 18 == 0 and i // 18 < len(poison):
                    reason, bad_value, bad_headers = poison[i // 18]
                    key = f"poison-{i}".encode()
                    partition, offset = await _produce(
                        producer, s.input_topic, key, bad_value, bad_headers
                    )
                    expected[f"{s.input_topic}/{partition}/{offset}"] = (
                        reason,
                        key,
                        bad_value,
                        bad_headers,
                    )
                    records += 1
            assert len(expected) == len(poison)
            await wait_consumed(checker, s.consumer_group, records, within=60)

            # A conflicting duplicate: the same (source, id) as an applied event, other content,
            # in a later batch; and two conflicting twins within one batch.
            original = good[7]
            changed = dict(original, type="sla.breached")
            twin_a = _event("twin", subject="cust-twin")
            twin_b = _event("twin", subject="cust-twin", type="promise.broken")
            good.append(twin_a)
            for event, is_conflict in ((changed, True), (twin_a, False), (twin_b, True)):
                key, value, headers = codec.encode_structured(event)
                partition, offset = await _produce(producer, s.input_topic, key, value, headers)
                records += 1
                if is_conflict:
                    expected[f"{s.input_topic}/{partition}/{offset}"] = (
                        "conflict",
                        key,
                        value,
                        headers,
                    )
            await wait_consumed(checker, s.consumer_group, records, within=60)
    finally:
        await producer.stop()

    await assert_ledger_matches(checker, good)
    letters = dead_letters(await read_topic(s, s.dlq_topic))
    by_origin = {letter.headers["relbank-origin"].decode(): letter for letter in letters}
    assert len(letters) == len(by_origin), "a dead letter was produced twice"
    assert by_origin.keys() == expected.keys()
    for origin, (reason, key, value, headers) in expected.items():
        letter = by_origin[origin]
        assert letter.headers["relbank-error"].decode() == reason, (origin, letter.headers)
        assert letter.headers["relbank-error-detail"], origin
        assert letter.key == key
        assert (letter.value or b"") == (value or b"")
        # The original headers come first, as they were.
        original_headers = [(k, v if v is not None else b"") for k, v in headers]
        assert letter.all_headers[: len(original_headers)] == original_headers
    counted = {
        reason: metrics.DLQ.labels(reason=reason)._value.get() - reasons_before[reason]
        for reason in reasons_before
    }
    wanted = {r: sum(1 for e in expected.values() if e[0] == r) for r in reasons_before}
    assert counted == wanted
    assert metrics.DLQ.labels(reason="conflict")._value.get() - conflict_reason_before == 2


async def test_a_header_key_that_is_not_utf8_does_not_stall_its_partition(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    tmp_path: Path,
) -> None:
    s = kafka_settings
    before = make_corpus(50, customers=1, seed=7, prefix="before-")
    after = make_corpus(50, customers=1, seed=8, prefix="after-")
    poisoned = _event("p-key", subject=before[0]["subject"])
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        partitions = []
        for event in before:
            key, value, headers = codec.encode_structured(event)
            partitions.append((await _produce(producer, s.input_topic, key, value, headers))[0])
        partition = partitions[0]
        value_file = tmp_path / "value.json"
        value_file.write_bytes(orjson.dumps(poisoned))
        # Another client, on the same partition as the good records around it.
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("foreign_producer.py")),
            s.kafka_bootstrap or "",
            s.input_topic,
            str(partition),
            b"\xffce_id".hex(),
            str(value_file),
            env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await done.communicate()
        assert done.returncode == 0
        offset = int(out)
        for event in after:
            key, value, headers = codec.encode_structured(event)
            await _produce(producer, s.input_topic, key, value, headers)
    finally:
        await producer.stop()
    try:
        async with running_consumer(s, engine, default_policy):
            await wait_consumed(checker, s.consumer_group, 101, within=60)
    finally:
        lenient.disable()
    await assert_ledger_matches(checker, before + after)
    [letter] = dead_letters(await read_topic(s, s.dlq_topic))
    assert letter.headers["relbank-error"] == b"bad_headers"
    assert letter.headers["relbank-origin"].decode() == f"{s.input_topic}/{partition}/{offset}"
    assert letter.value == orjson.dumps(poisoned)
    assert letter.all_headers[0] == ("\\xffce_id", b"1")  # the key's bytes, escaped
