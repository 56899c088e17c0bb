"""Duplicates by meaning (README): the same content however it is written hashes the same."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.envelope import content_hash, decode_json, parse_time
from service.domain.meaning import time_text
from tests.domain.factories import check
from tests.support.events import make_envelope


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal by the hash validate computes, and by the public function."""
    assert content_hash(a) == check(a).content_hash
    assert content_hash(b) == check(b).content_hash
    return check(a).content_hash == check(b).content_hash


def from_text(text: str) -> dict[str, Any]:
    envelope = decode_json(text.encode())
    assert isinstance(envelope, dict)
    return envelope


BASE = '"specversion":"1.0","id":"e1","source":"zendesk","type":"survey.nps","subject":"cust-1"'


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param("2026-11-23T11:00:00Z", "2026-11-23T11:00:00+00:00", id="Z and +00:00"),
        pytest.param("2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", id="other offset"),
        pytest.param("2026-01-01T00:00:00Z", "2025-12-31T19:00:00-05:00", id="other date"),
        pytest.param("2026-11-23T11:00:00Z", "2026-11-23T11:00:00.000Z", id="zero fraction"),
        pytest.param("2026-11-23T11:00:00.5Z", "2026-11-23T11:00:00.500000+00:00", id="fraction"),
        pytest.param("2026-11-23T11:00:00Z", "2026-11-23t11:00:00z", id="lower case"),
    ],
)
def test_time_is_compared_as_an_instant(one: str, other: str) -> None:
    assert same(make_envelope(time=one), make_envelope(time=other))


def test_another_instant_is_other_content() -> None:
    assert not same(
        make_envelope(time="2026-11-23T11:00:00Z"), make_envelope(time="2026-11-23T11:00:00.001Z")
    )


@pytest.mark.parametrize(
    "spelling",
    ["1.0", "1e0", "1E0", "10e-1", "1.000", "0.1e1", "1e+0"],
)
def test_numbers_are_compared_by_value_at_any_depth(spelling: str) -> None:
    def text(n: str) -> str:
        data = f'{{"magnitude":{n},"score":[{n},{{"deep":{{"n":{n}}}}}]}}'
        return f'{{{BASE},"time":"2026-11-23T11:00:00Z","data":{data}}}'

    assert same(from_text(text("1")), from_text(text(spelling)))
    assert not same(from_text(text("1")), from_text(text("1.5")))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(1, "1", id="number and string"),
        pytest.param(1, True, id="number and boolean"),
        pytest.param(0, None, id="zero and null"),
        pytest.param(0, False, id="zero and false"),
        pytest.param([1, 2], [2, 1], id="array order"),
        pytest.param(2**53, 2**53 + 1, id="integers beyond float precision"),
        pytest.param(2**64 - 1, float(2**64), id="largest integer and the float above"),
    ],
)
def test_values_that_differ_in_meaning_stay_apart(one: Any, other: Any) -> None:
    assert not same(make_envelope(data={"x": one}), make_envelope(data={"x": other}))


def test_a_large_integral_float_equals_the_integer() -> None:
    assert same(make_envelope(data={"x": 2**63}), make_envelope(data={"x": float(2**63)}))
    assert same(make_envelope(data={"x": -(2**63)}), make_envelope(data={"x": -float(2**63)}))
    assert same(make_envelope(data={"x": 0}), make_envelope(data={"x": -0.0}))


def test_members_in_any_order_and_null_attributes_as_absent() -> None:
    text = f'{{{BASE},"time":"2026-11-23T11:00:00Z","data":{{"a":1,"b":{{"c":2,"d":3}}}}}}'
    reordered = (
        '{"data":{"b":{"d":3,"c":2},"a":1},"time":"2026-11-23T11:00:00Z","subject":"cust-1",'
        '"type":"survey.nps","source":"zendesk","id":"e1","specversion":"1.0"}'
    )
    assert same(from_text(text), from_text(reordered))
    assert same(make_envelope(), make_envelope(extra={"data": None, "dataschema": None}))
    assert not same(make_envelope(), make_envelope(data={}))


def test_structured_and_binary_forms_are_one_event() -> None:
    """Binary mode carries every extension as a string and names the default content type."""
    structured = make_envelope(
        time="2026-11-23T12:00:00+01:00",
        data={"x": 1.0},
        extra={"priority": 5.0, "urgent": True, "ratio": 0.5},
    )
    binary = make_envelope(
        time="2026-11-23T11:00:00Z",
        data={"x": 1},
        extra={
            "priority": "5",
            "urgent": "true",
            "ratio": "0.5",
            "datacontenttype": "application/json; charset=utf-8",
        },
    )
    assert same(structured, binary)
    assert not same(binary, {**binary, "datacontenttype": "application/xml"})


def test_an_envelope_already_spelled_the_basis_way_hashes_its_stored_encoding() -> None:
    event = check(make_envelope(data={"magnitude": 2, "note": "x"}))
    assert event.content_hash == hashlib.sha256(event.encoded).digest()


# ---------------------------------------------------------------- properties

# JSON can carry neither NUL (PostgreSQL cannot store it) nor lone surrogates.
_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(_chars, max_size=8),
)
# Member names clear of `magnitude`, which has rules of its own.
_names = st.text(_chars, max_size=6).map(lambda name: "k" + name)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)
    ),
    max_leaves=20,
)


def _respelled(value: Any, rng: random.Random) -> Any:
    """The same JSON value written another way: integers as floats where exact, members
    shuffled."""
    if type(value) is int and abs(value) <= 2**53 and rng.random() < 0.5:
        return float(value)
    if type(value) is float and value.is_integer() and abs(value) < 2**53 and rng.random() < 0.5:
        return int(value)
    if isinstance(value, list):
        return [_respelled(v, rng) for v in value]
    if isinstance(value, dict):
        items = [(k, _respelled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    return value


_offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_instants = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(2026, 11, 1), timezones=st.just(UTC)
)


@given(
    data=st.dictionaries(_names, _json, max_size=5),
    instant=_instants,
    offset=_offsets,
    seed=st.integers(0, 2**32),
)
def test_any_respelling_is_a_duplicate(
    data: dict[str, Any], instant: datetime, offset: timezone, seed: int
) -> None:
    original = make_envelope(data=data, time=time_text(instant))
    respelled = make_envelope(
        data=_respelled(data, random.Random(seed)), time=instant.astimezone(offset).isoformat()
    )
    assert same(original, respelled)


@given(data=st.dictionaries(_names, _json, min_size=1, max_size=5), extra=_json)
def test_a_changed_value_is_a_conflict(data: dict[str, Any], extra: Any) -> None:
    name = next(iter(data))
    changed = {**data, name: [data[name], extra]}
    assert not same(make_envelope(data=data), make_envelope(data=changed))


@given(instant=_instants, offset=_offsets)
def test_the_basis_time_reads_back_as_the_same_instant_and_spelling(
    instant: datetime, offset: timezone
) -> None:
    text = time_text(instant.astimezone(offset))
    assert parse_time(text) == instant
    assert time_text(parse_time(text)) == text
    # Spelled the basis way, the envelope's own encoding is what gets hashed.
    event = check(make_envelope(time=text))
    assert (
        event.content_hash
        == hashlib.sha256(orjson.dumps(event.envelope, option=orjson.OPT_SORT_KEYS)).digest()
    )
