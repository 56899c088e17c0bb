"""An object that names a member twice is not JSON relbank accepts (README): no last-one-wins."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import jsontext
from service.domain.envelope import InvalidEvent, Reason, decode_batch, decode_json


def rejected(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_json(raw)
    assert caught.value.reason is Reason.NOT_JSON
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"subject":"victimA","subject":"victimB"}', id="top level"),
        pytest.param(b'{"data":{"a":1,"b":{"c":[{"d":1,"d":1}]}}}', id="nested in an array"),
        pytest.param(b'[{"a":1},{"b":1,"b":2}]', id="second item of a batch"),
        pytest.param(b'{"a":1,"\\u0061":2}', id="same name escaped"),
        pytest.param(b'{ "a" :1 ,\n\t"a"\r\n: {} }', id="whitespace around"),
        pytest.param(b'{"x":"\\u003a\\u003A","x":1}', id="escaped colons beside it"),
        pytest.param(b'{"x":"\\\\u003a","x":1}', id="escaped backslash before u003a"),
        pytest.param(b'{"":1,"":2}', id="empty name"),
        pytest.param(b'{"a":{"a":1,"b":2,"b":3}}', id="inner object"),
    ],
)
def test_a_repeated_member_name_is_not_json(raw: bytes) -> None:
    error = rejected(raw)
    assert "more than once" in error.detail


def test_the_detail_names_the_repeated_member() -> None:
    assert "`subject`" in rejected(b'{"subject":"a","id":"1","subject":"b"}').detail
    assert "`é`" in rejected('{"é":1,"\\u00e9":2}'.encode()).detail


def test_a_repeat_deep_down_is_found() -> None:
    deep = b'{"n":' * 300 + b'{"a":1,"a":2}' + b"}" * 300
    assert "more than once" in rejected(deep).detail
    assert decode_json(b'{"n":' * 300 + b'{"a":1}' + b"}" * 300) is not None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":{"a":{"a":1}}}',
        b'[{"a":1},{"a":1}]',
        b'{"a":"b:c","b":"\\":\\"","c":"\\u003a"}',
        b'{"a\\"":1,"a":2,"a\\\\":3}',
        b'{"x":"\\\\u003a"}',
        b"[]",
        b'"text: with a colon"',
        b"{}",
    ],
)
def test_equal_names_in_different_objects_or_strings_are_fine(raw: bytes) -> None:
    assert decode_json(raw) == orjson.loads(raw)


def test_a_batch_with_a_repeat_in_one_event_is_not_json() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_batch(b'[{"id":"1"},{"id":"2","id":"3"}]')
    assert caught.value.reason is Reason.NOT_JSON


# ---------------------------------------------------------------- property: agrees with an oracle

_chars = st.characters(exclude_categories=["Cs"])
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(_chars, max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(st.sampled_from('ab:"\\é'), max_size=3), inner, max_size=4),
    ),
    max_leaves=25,
)


def _space(rng: random.Random) -> str:
    return rng.choice(["", "", " ", "\n", "\t ", "\r\n"])


def _string(text: str, rng: random.Random) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20:
            out.append(json.dumps(ch)[1:-1])
        elif ord(ch) <= 0xFFFF and rng.random() < 0.3:
            out.append(f"\\u{ord(ch):04{rng.choice('xX')}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _write(value: Any, rng: random.Random, repeats: float) -> str:
    """`value` as JSON text, spaced and escaped at random; objects repeat a member name with
    probability `repeats`."""
    if isinstance(value, dict):
        members = [(k, _write(v, rng, repeats)) for k, v in value.items()]
        if members and rng.random() < repeats:
            name = rng.choice(members)[0]
            members.insert(rng.randrange(len(members) + 1), (name, rng.choice(["1", '":"'])))
        inner = ",".join(
            f"{_space(rng)}{_string(k, rng)}{_space(rng)}:{_space(rng)}{v}{_space(rng)}"
            for k, v in members
        )
        return "{" + inner + _space(rng) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_space(rng) + _write(v, rng, repeats) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, rng)
    return json.dumps(value)


class _Repeat(Exception):
    pass


def _oracle_repeats(raw: bytes) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise _Repeat
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except _Repeat:
        return True
    return False


@settings(max_examples=400)
@given(value=_json, seed=st.integers(0, 2**32), repeats=st.sampled_from([0.0, 0.1, 0.5]))
def test_repeats_are_found_exactly_when_there_are_some(
    value: Any, seed: int, repeats: float
) -> None:
    raw = _write(value, random.Random(seed), repeats).encode()
    if _oracle_repeats(raw):
        with pytest.raises(jsontext.DuplicateMember):
            jsontext.loads(raw)
    else:
        assert jsontext.loads(raw) == orjson.loads(raw)
