"""CloudEvents envelope rules (README): each broken rule gives its own reason code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from service.domain.envelope import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    Reason,
    content_hash,
    decode_batch,
    decode_json,
)
from tests.domain.factories import MAX_FUTURE_SKEW, RECEIVED_AT, check
from tests.support.events import make_envelope

REQUIRED = ("specversion", "id", "source", "type", "subject", "time")


def reason_of(envelope: Any) -> Reason:
    with pytest.raises(InvalidEvent) as caught:
        check(envelope)
    return caught.value.reason


# Each case breaks exactly one rule of a valid envelope.
BROKEN: list[tuple[str, Any, Reason]] = [
    *[(f"missing {n}", make_envelope(omit=[n]), Reason.MISSING_ATTRIBUTE) for n in REQUIRED],
    *[(f"null {n}", make_envelope(extra={n: None}), Reason.MISSING_ATTRIBUTE) for n in REQUIRED],
    ("specversion 0.3", make_envelope(specversion="0.3"), Reason.BAD_SPECVERSION),
    ("specversion 1", make_envelope(specversion="1"), Reason.BAD_SPECVERSION),
    ("specversion number", make_envelope(specversion=1.0), Reason.BAD_SPECVERSION),
    ("specversion padded", make_envelope(specversion=" 1.0"), Reason.BAD_SPECVERSION),
    ("id empty", make_envelope(id=""), Reason.BAD_ATTRIBUTE),
    ("id 257", make_envelope(id="i" * 257), Reason.BAD_ATTRIBUTE),
    ("id number", make_envelope(id=17), Reason.BAD_ATTRIBUTE),
    ("source empty", make_envelope(source=""), Reason.BAD_ATTRIBUTE),
    ("source 257", make_envelope(source="s" * 257), Reason.BAD_ATTRIBUTE),
    ("source object", make_envelope(source={"name": "zendesk"}), Reason.BAD_ATTRIBUTE),
    ("source reserved", make_envelope(source="relbank"), Reason.RESERVED_SOURCE),
    ("type empty", make_envelope(type=""), Reason.BAD_ATTRIBUTE),
    ("type 129", make_envelope(type="t" * 129), Reason.BAD_ATTRIBUTE),
    ("type list", make_envelope(type=["a"]), Reason.BAD_ATTRIBUTE),
    ("datacontenttype number", make_envelope(extra={"datacontenttype": 5}), Reason.BAD_ATTRIBUTE),
    ("dataschema bool", make_envelope(extra={"dataschema": True}), Reason.BAD_ATTRIBUTE),
    ("subject empty", make_envelope(subject=""), Reason.BAD_SUBJECT),
    ("subject 129", make_envelope(subject="c" * 129), Reason.BAD_SUBJECT),
    ("subject number", make_envelope(subject=42), Reason.BAD_SUBJECT),
    ("subject NUL", make_envelope(subject="cust\x00-1"), Reason.BAD_SUBJECT),
    ("subject newline", make_envelope(subject="cust-1\n"), Reason.BAD_SUBJECT),
    ("subject tab", make_envelope(subject="cust\t1"), Reason.BAD_SUBJECT),
    ("subject DEL", make_envelope(subject="cust\x7f"), Reason.BAD_SUBJECT),
    ("subject C1 NEL", make_envelope(subject="cust\x85"), Reason.BAD_SUBJECT),
    ("time without offset", make_envelope(time="2026-11-23T11:00:00"), Reason.BAD_TIME),
    ("time date only", make_envelope(time="2026-11-23"), Reason.BAD_TIME),
    ("time words", make_envelope(time="yesterday at noon"), Reason.BAD_TIME),
    ("time epoch number", make_envelope(time=1_795_000_000), Reason.BAD_TIME),
    ("time bad month", make_envelope(time="2026-13-01T00:00:00Z"), Reason.BAD_TIME),
    ("time bad hour", make_envelope(time="2026-11-23T25:00:00Z"), Reason.BAD_TIME),
    ("time slashes", make_envelope(time="2026/11/23T11:00:00Z"), Reason.BAD_TIME),
    ("time bad separator", make_envelope(time="2026-11-23X11:00:00Z"), Reason.BAD_TIME),
    ("time RFC 2822", make_envelope(time="Mon, 23 Nov 2026 11:00:00 +0000"), Reason.BAD_TIME),
    ("time too far ahead", make_envelope(time="2026-11-23T12:05:01Z"), Reason.FUTURE_TIME),
    ("time far future", make_envelope(time="2027-01-01T00:00:00Z"), Reason.FUTURE_TIME),
    ("data string", make_envelope(data="hello"), Reason.BAD_DATA),
    ("data list", make_envelope(data=[1, 2]), Reason.BAD_DATA),
    ("data number", make_envelope(data=3), Reason.BAD_DATA),
    ("data bool", make_envelope(data=True), Reason.BAD_DATA),
    ("magnitude negative", make_envelope(data={"magnitude": -1}), Reason.BAD_MAGNITUDE),
    ("magnitude tiny negative", make_envelope(data={"magnitude": -1e-9}), Reason.BAD_MAGNITUDE),
    ("magnitude over 1000", make_envelope(data={"magnitude": 1000.001}), Reason.BAD_MAGNITUDE),
    ("magnitude NaN", make_envelope(data={"magnitude": float("nan")}), Reason.BAD_MAGNITUDE),
    ("magnitude inf", make_envelope(data={"magnitude": float("inf")}), Reason.BAD_MAGNITUDE),
    ("magnitude -inf", make_envelope(data={"magnitude": float("-inf")}), Reason.BAD_MAGNITUDE),
    ("magnitude string", make_envelope(data={"magnitude": "3"}), Reason.BAD_MAGNITUDE),
    ("magnitude bool", make_envelope(data={"magnitude": True}), Reason.BAD_MAGNITUDE),
    ("magnitude null", make_envelope(data={"magnitude": None}), Reason.BAD_MAGNITUDE),
    ("magnitude list", make_envelope(data={"magnitude": [1]}), Reason.BAD_MAGNITUDE),
    (
        "too large",
        make_envelope(data={"note": "x" * MAX_EVENT_BYTES}),
        Reason.TOO_LARGE,
    ),
    ("not an object: list", [make_envelope()], Reason.NOT_OBJECT),
    ("not an object: string", "event", Reason.NOT_OBJECT),
    ("not an object: null", None, Reason.NOT_OBJECT),
    ("not an object: number", 1, Reason.NOT_OBJECT),
]


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [pytest.param(envelope, reason, id=name) for name, envelope, reason in BROKEN],
)
def test_each_broken_rule_has_its_reason(envelope: Any, reason: Reason) -> None:
    assert reason_of(envelope) == reason


def test_every_envelope_reason_code_is_covered() -> None:
    produced = {reason for _, _, reason in BROKEN} | {Reason.NOT_JSON}
    # bad_headers (Kafka binary mode) and conflict (event store) are raised by the adapters.
    assert produced == set(Reason) - {Reason.BAD_HEADERS, Reason.CONFLICT}


def test_missing_attribute_detail_names_every_missing_attribute() -> None:
    with pytest.raises(InvalidEvent) as caught:
        check(make_envelope(omit=["subject", "time"]))
    assert caught.value.reason == Reason.MISSING_ATTRIBUTE
    assert "subject" in caught.value.detail
    assert "time" in caught.value.detail
    assert str(caught.value).startswith("missing_attribute")


def test_the_reserved_source_is_admitted_only_internally() -> None:
    envelope = make_envelope(
        source="relbank",
        type="relbank.customer.segment_changed",
        data={"segment": "enterprise"},
    )
    event = check(envelope, internal=True)
    assert event.source == "relbank"
    assert event.data == {"segment": "enterprise"}
    # Only the exact name is reserved.
    assert check(make_envelope(source="relbank-importer")).source == "relbank-importer"
    assert check(make_envelope(source="Relbank")).source == "Relbank"


def test_a_valid_envelope_becomes_an_event() -> None:
    envelope = make_envelope(time="2026-11-23T11:00:00Z")
    event = check(envelope)
    assert (event.source, event.id, event.type) == (
        "zendesk",
        "e1",
        "support.resolved_first_contact",
    )
    assert event.customer_id == "cust-1"
    assert event.time == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert event.effective_at == event.time
    assert event.received_at == RECEIVED_AT
    assert event.magnitude == 1.0
    assert event.data is None
    assert event.envelope == envelope
    assert event.content_hash == content_hash(envelope)


@pytest.mark.parametrize(
    ("name", "limit"), [("id", 256), ("source", 256), ("type", 128), ("subject", 128)]
)
def test_string_attributes_at_their_length_limit_are_valid(name: str, limit: int) -> None:
    at_limit = make_envelope(extra={name: "a" * limit})
    assert check(at_limit).envelope[name] == "a" * limit
    shortest = make_envelope(extra={name: "a"})
    assert check(shortest).envelope[name] == "a"


def test_length_limits_count_characters_not_bytes() -> None:
    event = check(make_envelope(subject="ü" * 128, id="é" * 256))
    assert event.customer_id == "ü" * 128


def test_subject_may_be_any_printable_unicode() -> None:
    assert check(make_envelope(subject="Kunde Müller / 東京 #7")).customer_id == (
        "Kunde Müller / 東京 #7"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T11:00:00Z", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-11-23t11:00:00z", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-11-23 11:00:00Z", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-11-23T13:00:00+02:00", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-11-23T06:30:00-04:30", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-11-23T11:00:00.25Z", datetime(2026, 11, 23, 11, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-23T11:00:00.123456Z", datetime(2026, 11, 23, 11, 0, 0, 123_456, tzinfo=UTC)),
        ("1999-01-01T00:00:00Z", datetime(1999, 1, 1, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_with_an_offset_are_accepted(text: str, expected: datetime) -> None:
    assert check(make_envelope(time=text)).time == expected


# RFC 3339 §5.6: seconds are required, the offset is `Z` or `±hh:mm`, no whitespace, `.` only.
@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T11:00+00:00",
        "2026-11-23T11:00:00+0000",
        "2026-11-23T11:00:00+01",
        "2026-11-23T11:00:00,5Z",
        " 2026-11-23T11:00:00Z",
        "2026-11-23T11:00:00Z ",
        "2026-11-23T11:00:00+01:00:30",
        "2026-11-23T11:00:00\n+00:00",
    ],
)
def test_iso8601_forms_outside_rfc3339_are_bad_time(text: str) -> None:
    assert reason_of(make_envelope(time=text)) == Reason.BAD_TIME


def test_slightly_future_time_is_booked_when_received() -> None:
    event = check(make_envelope(time="2026-11-23T12:03:00Z"))
    assert event.time == datetime(2026, 11, 23, 12, 3, tzinfo=UTC)
    assert event.effective_at == RECEIVED_AT


def test_time_exactly_at_the_skew_limit_is_accepted_and_clamped() -> None:
    at_limit = RECEIVED_AT + MAX_FUTURE_SKEW
    event = check(make_envelope(time=at_limit.isoformat()))
    assert event.time == at_limit
    assert event.effective_at == RECEIVED_AT


def test_one_microsecond_beyond_the_skew_is_rejected() -> None:
    beyond = RECEIVED_AT + MAX_FUTURE_SKEW + timedelta(microseconds=1)
    assert reason_of(make_envelope(time=beyond.isoformat())) == Reason.FUTURE_TIME


def test_skew_is_judged_in_utc_not_by_the_local_clock_reading() -> None:
    # 13:30 at +02:00 is 11:30Z, half an hour before the server clock.
    event = check(make_envelope(time="2026-11-23T13:30:00+02:00"))
    assert event.effective_at == datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
    # 08:00 at -05:00 is 13:00Z, an hour ahead.
    assert reason_of(make_envelope(time="2026-11-23T08:00:00-05:00")) == Reason.FUTURE_TIME


def test_the_skew_is_a_parameter() -> None:
    envelope = make_envelope(time="2026-11-23T12:20:00Z")
    with pytest.raises(InvalidEvent):
        check(envelope)
    event = check(envelope, max_future_skew=timedelta(hours=1))
    assert event.effective_at == RECEIVED_AT


def test_old_events_are_accepted() -> None:
    event = check(make_envelope(time="2001-02-03T04:05:06Z"))
    assert event.effective_at == datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("magnitude", "expected"), [(0, 0.0), (0.5, 0.5), (3, 3.0), (1000, 1000.0), (1000.0, 1000.0)]
)
def test_magnitude_in_range_scales(magnitude: float, expected: float) -> None:
    event = check(make_envelope(data={"magnitude": magnitude}))
    assert event.magnitude == expected
    assert isinstance(event.magnitude, float)


def test_magnitude_defaults_to_one() -> None:
    assert check(make_envelope(data={"score": 9})).magnitude == 1.0
    assert check(make_envelope(extra={"data": None})).magnitude == 1.0


def test_explicit_null_data_is_no_data() -> None:
    assert check(make_envelope(extra={"data": None})).data is None


def test_data_fields_extensions_and_datacontenttype_are_kept() -> None:
    data = {"magnitude": 2, "score": 9, "nested": {"a": [1, 2, {"b": None}]}, "note": "ok"}
    extra = {
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/nps.json",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "partitionkey": "cust-1",
        "comexampleextension": 5,
    }
    envelope = make_envelope(data=data, extra=extra)
    event = check(envelope)
    assert event.data == data
    assert event.magnitude == 2.0
    for name, value in extra.items():
        assert event.envelope[name] == value
    assert event.envelope == envelope


def test_size_limit_is_64_kib_of_the_encoding() -> None:
    envelope = make_envelope(data={"note": ""})
    overhead = len(orjson.dumps(envelope))
    at_limit = make_envelope(data={"note": "x" * (MAX_EVENT_BYTES - overhead)})
    assert len(orjson.dumps(at_limit)) == MAX_EVENT_BYTES
    assert check(at_limit).data is not None
    over = make_envelope(data={"note": "x" * (MAX_EVENT_BYTES - overhead + 1)})
    assert reason_of(over) == Reason.TOO_LARGE


def test_size_is_checked_before_anything_else() -> None:
    huge_and_broken = make_envelope(specversion="0.3", data={"note": "x" * MAX_EVENT_BYTES})
    assert reason_of(huge_and_broken) == Reason.TOO_LARGE


def test_content_hash_ignores_key_order() -> None:
    envelope = make_envelope(
        data={"score": 9, "magnitude": 2, "nested": {"a": 1, "b": [{"x": 1, "y": 2}]}},
        extra={"traceparent": "t"},
    )
    reordered = json.loads(json.dumps(envelope, sort_keys=True))
    reordered["data"] = dict(reversed(list(reordered["data"].items())))
    reordered["data"]["nested"] = {"b": [{"y": 2, "x": 1}], "a": 1}
    reordered = dict(reversed(list(reordered.items())))
    assert list(reordered) != list(envelope)
    assert reordered == envelope
    assert check(reordered).content_hash == check(envelope).content_hash
    assert content_hash(reordered) == content_hash(envelope)


def test_content_hash_does_not_depend_on_when_it_was_received() -> None:
    envelope = make_envelope()
    later = check(envelope, received_at=RECEIVED_AT + timedelta(days=3))
    assert later.content_hash == check(envelope).content_hash


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(make_envelope(data={"score": 8}), id="data value"),
        pytest.param(make_envelope(data={"score": 9, "x": 1}), id="extra data field"),
        pytest.param(make_envelope(data={"score": 9}, extra={"traceparent": "t"}), id="extension"),
        pytest.param(make_envelope(data={"score": 9}, type="survey.csat"), id="type"),
        pytest.param(make_envelope(data={"score": 9}, subject="cust-2"), id="subject"),
        pytest.param(
            make_envelope(data={"score": 9}, time="2026-11-23T10:00:00Z"),
            id="another instant",
        ),
        pytest.param(make_envelope(data={"score": 9.5}), id="another number"),
    ],
)
def test_content_hash_differs_when_content_differs(changed: dict[str, Any]) -> None:
    original = make_envelope(data={"score": 9})
    assert check(changed).content_hash != check(original).content_hash


def test_decode_json_rejects_what_is_not_json() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_json(b'{"specversion": "1.0",')
    assert caught.value.reason == Reason.NOT_JSON
    assert decode_json(b'{"a": 1}') == {"a": 1}


def test_decode_batch_wants_an_array() -> None:
    assert decode_batch(b'[{"a": 1}, 2]') == [{"a": 1}, 2]
    with pytest.raises(InvalidEvent) as caught:
        decode_batch(b'{"a": 1}')
    assert caught.value.reason == Reason.NOT_JSON


# A hostile but small envelope must be rejected with a reason, never crash the caller (a crash is
# a 500 on HTTP and a stuck partition on Kafka).
def test_deeply_nested_data_is_rejected_not_a_crash() -> None:
    raw = b'{"deep":' * 300 + b"1" + b"}" * 300
    envelope = make_envelope(data=decode_json(raw))
    assert reason_of(envelope) == Reason.BAD_DATA


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"magnitude": 10**400}, id="huge magnitude"),
        pytest.param({"ticket": 2**64}, id="huge int field"),
    ],
)
def test_integers_beyond_64_bits_are_rejected_not_a_crash(data: dict[str, Any]) -> None:
    reason = reason_of(make_envelope(data=data))
    assert reason in {Reason.BAD_DATA, Reason.BAD_MAGNITUDE}


def test_a_nul_character_is_rejected_with_the_attribute_or_data_reason() -> None:
    with pytest.raises(InvalidEvent) as in_data:
        check(make_envelope(data={"note": "a\x00b"}))
    assert in_data.value.reason is Reason.BAD_DATA
    with pytest.raises(InvalidEvent) as in_id:
        check(make_envelope(id="a\x00b"))
    assert in_id.value.reason is Reason.BAD_ATTRIBUTE


def test_the_hash_sees_content_not_encoding() -> None:
    """Binary mode carries extensions as strings and names the default content type: the same
    event sent both ways is a duplicate, not a conflict."""
    structured = make_envelope(data={"x": 1}, extra={"priority": 5, "urgent": True})
    binary = make_envelope(
        data={"x": 1},
        extra={"priority": "5", "urgent": "true", "datacontenttype": "application/json"},
    )
    assert content_hash(structured) == content_hash(binary)
    assert content_hash(structured) != content_hash(make_envelope(data={"x": 2}))
    assert content_hash(binary) != content_hash({**binary, "datacontenttype": "text/plain"})
