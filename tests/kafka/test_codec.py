"""CloudEvents on Kafka: structured and binary records to envelopes, and back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.envelope import Event
from service.kafka import codec
from service.kafka.dlq import DeadLetter
from tests.support.events import make_event

NOW = datetime.now(UTC)
SKEW = timedelta(minutes=5)


@dataclass
class Record:
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    key: bytes | None = b"cust-1"
    topic: str = "in"
    partition: int = 2
    offset: int = 41


def _decode(record: Record) -> Event | codec.Rejection:
    return codec.decode(record, received_at=NOW, max_future_skew=SKEW)


def _reason(record: Record) -> str:
    decoded = _decode(record)
    assert isinstance(decoded, codec.Rejection), decoded
    return decoded.reason


def test_structured_with_or_without_content_type() -> None:
    event = make_event(data={"magnitude": 2})
    for headers in ([], [("content-type", b"application/cloudevents+json; charset=utf-8")]):
        decoded = _decode(Record(orjson.dumps(event), list(headers)))
        assert isinstance(decoded, Event)
        assert decoded.envelope == event
        assert decoded.magnitude == 2


def test_binary_maps_headers_to_attributes_and_the_value_to_data() -> None:
    event = make_event(
        data={"score": 9}, traceparent="00-abc-01", datacontenttype="application/json"
    )
    key, value, headers = codec.encode_binary(event)
    assert key == b"cust-1"
    assert ("ce_traceparent", b"00-abc-01") in headers
    assert ("content-type", b"application/json") in headers
    decoded = _decode(Record(value, list(headers)))
    assert isinstance(decoded, Event)
    assert decoded.envelope == event
    assert decoded.content_hash == _structured_hash(event)


def _structured_hash(event: dict[str, Any]) -> bytes:
    decoded = _decode(Record(orjson.dumps(event)))
    assert isinstance(decoded, Event)
    return decoded.content_hash


def test_binary_without_data_and_without_content_type() -> None:
    event = make_event()
    _, value, headers = codec.encode_binary(event)
    assert value is None
    for empty in (None, b""):
        decoded = _decode(Record(empty, list(headers)))
        assert isinstance(decoded, Event)
        assert decoded.envelope == event


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans(), st.none()),
        max_size=5,
    )
)
def test_binary_round_trip_keeps_any_data(data: dict[str, Any]) -> None:
    event = make_event(data=data)
    _, value, headers = codec.encode_binary(event)
    envelope = codec.to_envelope(Record(value, list(headers)))
    assert envelope == event


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([("ce_specversion", b"1.0"), ("ce_id", b"\xff")], b"{}", "bad_headers"),
        ([("ce_specversion", b"1.0"), ("ce_id", None)], b"{}", "bad_headers"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"a"), ("CE_ID", b"b")], b"{}", "bad_headers"),
        ([("ce_specversion", b"1.0"), ("content-type", b"\xc3")], b"{}", "bad_headers"),
        ([("ce_specversion", b"1.0"), ("content-type", b"text/plain")], b"hi", "bad_data"),
        ([("ce_specversion", b"1.0")], b"{nope", "not_json"),
        ([("ce_specversion", b"1.0")], b"{}", "missing_attribute"),
        ([], b"{nope", "not_json"),
        ([], None, "not_json"),
        ([], b'"a string"', "not_object"),
        ([], b"{" + b" " * 70_000 + b"}", "missing_attribute"),
        ([], b"{" + b" " * codec.MAX_RECORD_BYTES + b"}", "too_large"),
        ([], b'{"specversion":"1.0","specversion":"1.0"}', "not_json"),
        ([("ce_specversion", b"1.0")], b'{"score":9,"score":1}', "not_json"),
    ],
)
def test_what_cannot_be_accepted_says_why(
    headers: list[tuple[str, bytes | None]], value: bytes | None, reason: str
) -> None:
    assert _reason(Record(value, headers)) == reason


def test_one_size_rule_in_both_modes_however_the_record_is_padded() -> None:
    """The event's stored encoding counts, not the record's bytes (README)."""
    padded = orjson.dumps(make_event(data={"note": "x"})) + b" " * 70_000
    assert isinstance(_decode(Record(padded)), Event)
    big = make_event(data={"note": "x" * (64 * 1024)})
    assert _reason(Record(orjson.dumps(big))) == "too_large"
    _, data, headers = codec.encode_binary(big)
    assert _reason(Record(data, list(headers))) == "too_large"


def test_a_header_that_is_not_ours_is_ignored_even_if_binary() -> None:
    event = make_event()
    decoded = _decode(Record(orjson.dumps(event), [("traceparent", b"\xff\xfe")]))
    assert isinstance(decoded, Event)


def test_dead_letter_keeps_the_record_and_says_why_and_where_from() -> None:
    record = Record(b"{nope", [("x-trace", b"1"), ("relbank-error", b"old")])
    letter = DeadLetter(record, "not_json", "é" * 2000)
    headers = letter.headers()
    assert headers[0] == ("x-trace", b"1")
    names = [k for k, _ in headers]
    assert names.count("relbank-error") == 1
    assert dict(headers)["relbank-error"] == b"not_json"
    assert dict(headers)["relbank-origin"] == b"in/2/41"
    detail = dict(headers)["relbank-error-detail"]
    assert len(detail) <= 1024
    detail.decode("utf-8")  # cut on a character boundary
