"""The checked-in JSON Schemas: no drift from the models, and agreement with `validate`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service import cli
from service.domain.envelope import InvalidEvent
from service.domain.policy import DEFAULT_POLICY_PATH
from service.schemas import (
    DEFAULT_DIRECTORY,
    EVENT_SCHEMA_FILE,
    POLICY_SCHEMA_FILE,
    event_schema,
    policy_schema,
    render,
    schema_files,
    write_schemas,
)
from tests.domain.factories import check
from tests.support.events import make_envelope
from tests.support.policy import make_policy_document

REQUIRED = ("specversion", "id", "source", "type", "subject", "time")


def event_validator() -> Any:
    return jsonschema.Draft202012Validator(event_schema())


def policy_validator() -> Any:
    return jsonschema.Draft202012Validator(policy_schema())


def schema_accepts(envelope: Any) -> bool:
    return bool(event_validator().is_valid(envelope))


def validate_accepts(envelope: Any) -> bool:
    try:
        check(envelope)
    except InvalidEvent:
        return False
    return True


# ---------------------------------------------------------------- generation and drift


@pytest.mark.parametrize("name", [EVENT_SCHEMA_FILE, POLICY_SCHEMA_FILE])
def test_checked_in_schema_matches_the_model(name: str) -> None:
    path = DEFAULT_DIRECTORY / name
    assert path.read_text(encoding="utf-8") == render(schema_files()[name]), (
        f"{path} is stale: run `uv run relbank schemas`"
    )


def test_schemas_are_valid_draft_2020_12_with_an_id() -> None:
    for name, schema in schema_files().items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://relbank.dev/schemas/{name}"


def test_render_is_sorted_indented_and_ends_with_a_newline() -> None:
    text = render({"b": 1, "a": {"d": 2, "c": 3}})
    assert text == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'


def test_write_schemas_writes_both_files() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out"
        paths = write_schemas(target)
        assert sorted(p.name for p in paths) == sorted([EVENT_SCHEMA_FILE, POLICY_SCHEMA_FILE])
        for path in paths:
            assert json.loads(path.read_text(encoding="utf-8")) == schema_files()[path.name]


def test_relbank_schemas_writes_into_the_given_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cli.main(["schemas", tmp])
        assert (Path(tmp) / EVENT_SCHEMA_FILE).is_file()
        assert (Path(tmp) / POLICY_SCHEMA_FILE).is_file()
        assert str(Path(tmp) / EVENT_SCHEMA_FILE) in capsys.readouterr().out


# ---------------------------------------------------------------- envelope schema vs validate

VALID = [
    make_envelope(),
    make_envelope(data={"magnitude": 0}),
    make_envelope(data={"magnitude": 1000}),
    make_envelope(data={"magnitude": 2.5, "score": 9, "nested": {"x": [1, None]}}),
    make_envelope(data={}),
    make_envelope(extra={"data": None}),
    make_envelope(
        extra={
            "datacontenttype": "application/json",
            "dataschema": "https://example.com/s.json",
            "traceparent": "00-abc-def-01",
            "comexampleextension": 7,
        }
    ),
    make_envelope(extra={"datacontenttype": None}),
    make_envelope(id="i" * 256, source="s" * 256, type="t" * 128, subject="c" * 128),
    make_envelope(id="x", source="/billing/eu", type="t", subject="c"),
    make_envelope(subject="Kunde Müller / 東京 #7"),
    make_envelope(time="2026-11-23T13:00:00+02:00"),
    make_envelope(time="2026-11-23T11:00:00.123456Z"),
]

# Everything here breaks a rule the schema can state: presence, type, length, pattern, range.
INVALID = [
    *[make_envelope(omit=[name]) for name in REQUIRED],
    *[make_envelope(extra={name: None}) for name in REQUIRED],
    make_envelope(specversion="0.3"),
    make_envelope(specversion="1"),
    make_envelope(specversion=1.0),
    make_envelope(id=""),
    make_envelope(id="i" * 257),
    make_envelope(id=17),
    make_envelope(source=""),
    make_envelope(source="s" * 257),
    make_envelope(source=["zendesk"]),
    make_envelope(type=""),
    make_envelope(type="t" * 129),
    make_envelope(type=False),
    make_envelope(subject=""),
    make_envelope(subject="c" * 129),
    make_envelope(subject=42),
    make_envelope(subject="cust\x00-1"),
    make_envelope(subject="cust\t1"),
    make_envelope(subject="a\nb"),
    make_envelope(subject="cust\x7f"),
    make_envelope(subject="cust\x9f"),
    make_envelope(time=1_795_000_000),
    make_envelope(data="hello"),
    make_envelope(data=[1, 2]),
    make_envelope(data=3),
    make_envelope(data={"magnitude": -1}),
    make_envelope(data={"magnitude": -0.001}),
    make_envelope(data={"magnitude": 1000.5}),
    make_envelope(data={"magnitude": "3"}),
    make_envelope(data={"magnitude": True}),
    make_envelope(data={"magnitude": None}),
    make_envelope(data={"magnitude": {"value": 1}}),
    make_envelope(extra={"datacontenttype": 5}),
    make_envelope(extra={"dataschema": False}),
    [make_envelope()],
    "event",
    7,
]


@pytest.mark.parametrize("envelope", VALID)
def test_schema_and_validate_accept_the_valid_corpus(envelope: dict[str, Any]) -> None:
    assert validate_accepts(envelope)
    event_validator().validate(envelope)


@pytest.mark.parametrize("envelope", INVALID)
def test_schema_and_validate_reject_the_invalid_corpus(envelope: Any) -> None:
    assert not validate_accepts(envelope)
    assert not schema_accepts(envelope)


# Rules beyond what the schema states (validate is stricter here, the schema never disagrees the
# other way): RFC 3339 `time` (`format` is an annotation by default), clock skew, the 64 KiB size,
# and the reserved source `relbank`.
BEYOND_THE_SCHEMA = [
    make_envelope(time="2026-11-23T11:00:00"),
    make_envelope(time="yesterday"),
    make_envelope(time="2030-01-01T00:00:00Z"),
    make_envelope(data={"note": "x" * 70_000}),
    make_envelope(source="relbank"),
]


@pytest.mark.parametrize("envelope", BEYOND_THE_SCHEMA)
def test_validate_rejects_what_the_schema_cannot_state(envelope: dict[str, Any]) -> None:
    assert not validate_accepts(envelope)


def _absent_or(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), st.none(), values)


_ABSENT = object()


# Python's `re` lets `$` match before a final newline (ECMA-262 does not), so a string ending in
# "\n" passes the schema's patterns under the `jsonschema` package; leave those out.
def _no_final_newline(s: str) -> bool:
    return not s.endswith("\n")


_texts = st.text(max_size=300).filter(_no_final_newline)
_wrong_types: st.SearchStrategy[Any] = st.one_of(
    st.integers(-5, 5), st.booleans(), st.lists(st.integers(-9, 9), max_size=2), st.just({})
)
_magnitudes = st.one_of(
    st.floats(-2000, 2000, allow_nan=False, allow_infinity=False),
    st.integers(-2000, 2000),
    st.sampled_from([0, 0.0, 1000, 1000.0]),
    _wrong_types,
    st.text(max_size=3),
    st.none(),
)
_data = st.one_of(
    st.dictionaries(st.sampled_from(["score", "note"]), st.integers(0, 10), max_size=2),
    st.fixed_dictionaries({"magnitude": _magnitudes}),
    _wrong_types,
    st.text(max_size=3),
)
_attributes: dict[str, st.SearchStrategy[Any]] = {
    "specversion": _absent_or(st.sampled_from(["1.0", "1.0", "0.3", "1", "", "1.00"])),
    "id": _absent_or(st.one_of(_texts, _wrong_types)),
    "source": _absent_or(st.one_of(_texts.filter(lambda s: s != "relbank"), _wrong_types)),
    "type": _absent_or(st.one_of(_texts, _wrong_types)),
    "subject": _absent_or(st.one_of(_texts, st.text(min_size=120, max_size=140), _wrong_types)),
    "time": _absent_or(st.one_of(st.just("2026-11-23T11:00:00Z"), st.integers(0, 10))),
    "data": _absent_or(_data),
    "datacontenttype": _absent_or(st.one_of(st.just("application/json"), _wrong_types)),
}


_good: dict[str, st.SearchStrategy[Any]] = {
    "specversion": st.just("1.0"),
    "id": st.text(min_size=1, max_size=256).filter(_no_final_newline),
    "source": st.text(min_size=1, max_size=256).filter(
        lambda s: _no_final_newline(s) and s != "relbank"
    ),
    "type": st.text(min_size=1, max_size=128).filter(_no_final_newline),
    "subject": st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=128),
    "time": st.sampled_from(
        ["2026-11-23T11:00:00Z", "2026-11-23T13:00:00.5+02:00", "1999-12-31T23:59:59-08:00"]
    ),
    "data": st.one_of(
        st.just(_ABSENT),
        st.none(),
        st.fixed_dictionaries(
            {"magnitude": st.floats(0, 1000)}, optional={"score": st.integers(-99, 99)}
        ),
    ),
    "datacontenttype": st.sampled_from([_ABSENT, None, "application/json"]),
}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope with up to two attributes drawn from a wild mix of good and bad values."""
    wild = draw(st.lists(st.sampled_from(list(_attributes)), max_size=2, unique=True))
    envelope: dict[str, Any] = {}
    for name in _attributes:
        value = draw(_attributes[name] if name in wild else _good[name], label=name)
        if value is not _ABSENT:
            envelope[name] = value
    return envelope


@settings(max_examples=500)
@given(envelope=envelopes())
def test_schema_and_validate_agree_on_generated_envelopes(envelope: dict[str, Any]) -> None:
    assert schema_accepts(envelope) == validate_accepts(envelope), envelope


# ---------------------------------------------------------------- policy schema


def test_default_policy_validates_against_the_policy_schema() -> None:
    document = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    policy_validator().validate(document)


def test_the_small_test_policy_validates_against_the_policy_schema() -> None:
    policy_validator().validate(make_policy_document())
    policy_validator().validate(make_policy_document(half_life_days=None))


def _policy(**changes: Any) -> dict[str, Any]:
    document = make_policy_document()
    document.update(changes)
    return document


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {k: v for k, v in make_policy_document().items() if k != "thresholds"},
            id="missing thresholds",
        ),
        pytest.param(_policy(half_life_days=-1), id="negative half-life"),
        pytest.param(_policy(half_life_days=0), id="zero half-life"),
        pytest.param(_policy(colour="red"), id="unknown key"),
        pytest.param(_policy(moments={"m": {"weight": 1}}), id="moment without pillar"),
        pytest.param(
            _policy(moments={"m": {"pillar": "p", "weight": 1, "x": 2}}), id="unknown moment key"
        ),
        pytest.param(
            _policy(moments={"m": {"pillar": "p", "field": "f", "bands": []}}), id="empty bands"
        ),
        pytest.param(_policy(segments={"s": {"weight_multiplier": -1}}), id="negative multiplier"),
        pytest.param(_policy(version=""), id="empty version"),
    ],
)
def test_the_policy_schema_rejects_what_it_can_state(document: dict[str, Any]) -> None:
    assert not policy_validator().is_valid(document)
