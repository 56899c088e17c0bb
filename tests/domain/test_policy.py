"""The weighting policy (README): loading, validation messages, and weighing one event."""

from __future__ import annotations

import copy
import itertools
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from service.domain.policy import (
    DEFAULT_POLICY_PATH,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
    weigh,
)
from tests.support.policy import make_policy, make_policy_document

KPMG_PILLARS = {
    "personalisation",
    "integrity",
    "expectations",
    "resolution",
    "time_and_effort",
    "empathy",
}
PILLARS = KPMG_PILLARS | {"advocacy"}


def policy_error(document: Any) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    return str(caught.value)


# ---------------------------------------------------------------- the shipped default policy


def test_default_policy_loads() -> None:
    policy = load_policy()
    assert policy == load_policy(DEFAULT_POLICY_PATH)
    assert policy.version
    assert policy.half_life_days is not None
    assert policy.half_life_days > 0
    assert policy.thresholds.recover_at_or_above >= policy.thresholds.at_risk_below


def test_default_policy_has_a_real_catalogue() -> None:
    policy = load_policy()
    assert len(policy.moments) >= 25
    weights = [m.weight for m in policy.moments.values() if m.weight is not None]
    assert any(w > 0 for w in weights)
    assert any(w < 0 for w in weights)
    assert any(m.bands for m in policy.moments.values())


def test_default_policy_pillars_are_kpmg_plus_advocacy() -> None:
    pillars = {m.pillar for m in load_policy().moments.values()}
    assert pillars <= PILLARS
    assert pillars >= KPMG_PILLARS


def test_default_policy_has_the_moments_the_design_names() -> None:
    policy = load_policy()
    assert policy.moments["support.resolved_first_contact"].weight == 6
    assert policy.moments["support.resolved_first_contact"].pillar == "resolution"
    assert policy.moments["sla.breached"].weight == -10
    assert policy.moments["sla.breached"].pillar == "time_and_effort"
    nps = policy.moments["survey.nps"]
    assert nps.field == "score"
    assert nps.bands is not None
    assert [(b.min, b.max, b.weight) for b in nps.bands] == [
        (0, 6, -12),
        (7, 8, 0),
        (9, 10, 10),
    ]


def test_default_policy_segment_thresholds_keep_hysteresis() -> None:
    policy = load_policy()
    for name, segment in policy.segments.items():
        thresholds = policy.thresholds_for(name)
        assert thresholds.recover_at_or_above >= thresholds.at_risk_below
        assert policy.multiplier_for(name) == segment.weight_multiplier


def test_default_policy_bands_do_not_overlap() -> None:
    for moment in load_policy().moments.values():
        bands = sorted(moment.bands or [], key=lambda b: b.min)
        for lower, upper in itertools.pairwise(bands):
            assert lower.max < upper.min


# ---------------------------------------------------------------- loading and validation


def test_minimal_policy_defaults() -> None:
    document = make_policy_document()
    del document["opening_balance"]
    del document["segments"]
    policy = parse_policy(document)
    assert policy.opening_balance == 0
    assert policy.segments == {}
    assert policy.thresholds_for("enterprise") == policy.thresholds
    assert policy.multiplier_for("enterprise") == 1.0
    assert policy.multiplier_for(None) == 1.0


def test_null_half_life_means_no_decay() -> None:
    assert make_policy(half_life_days=None).half_life_days is None


def test_segments_override_thresholds_and_multiplier() -> None:
    policy = make_policy()
    assert policy.thresholds_for("enterprise").at_risk_below == -25
    assert policy.thresholds_for("smb") == policy.thresholds
    assert policy.thresholds_for(None) == policy.thresholds
    assert policy.multiplier_for("enterprise") == 1.5
    assert policy.multiplier_for("unknown-segment") == 1.0


def _without_thresholds(d: dict[str, Any]) -> None:
    del d["thresholds"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "key_path"),
    [
        pytest.param(_without_thresholds, "thresholds", id="missing thresholds"),
        pytest.param(_set("thresholds/recover_at_or_above", -20), "thresholds", id="recover<risk"),
        pytest.param(
            _set("segments/enterprise/thresholds/recover_at_or_above", -30),
            "segments.enterprise.thresholds",
            id="segment recover<risk",
        ),
        pytest.param(_set("half_life_days", -1), "half_life_days", id="negative half-life"),
        pytest.param(_set("half_life_days", 0), "half_life_days", id="zero half-life"),
        pytest.param(_set("half_life_days", float("inf")), "half_life_days", id="inf half-life"),
        pytest.param(_set("half_life_days", "ninety"), "half_life_days", id="text half-life"),
        pytest.param(
            _set("moments/survey.nps/weight", 3), "moments.survey.nps", id="weight and bands"
        ),
        pytest.param(
            _set("moments/promise.broken/field", "score"),
            "moments.promise.broken",
            id="weight and field",
        ),
        pytest.param(
            _set("moments/survey.nps/bands", None), "moments.survey.nps", id="field without bands"
        ),
        pytest.param(_set("moments/survey.nps/bands", []), "moments.survey.nps", id="no bands"),
        pytest.param(
            _set("moments/survey.nps/bands/1", {"min": 8, "max": 7, "weight": 0}),
            "moments.survey.nps.bands.1",
            id="band max<min",
        ),
        pytest.param(
            _set("moments/survey.nps/bands/0", {"min": 0, "weight": 0}),
            "moments.survey.nps.bands.0.max",
            id="band without max",
        ),
        pytest.param(
            _set("moments/promise.broken", {"weight": -12}),
            "moments.promise.broken.pillar",
            id="moment without pillar",
        ),
        pytest.param(_set("colour", "red"), "colour", id="unknown top-level key"),
        pytest.param(
            _set("moments/promise.broken/colour", "red"),
            "moments.promise.broken.colour",
            id="unknown moment key",
        ),
        pytest.param(
            _set("thresholds/at_risk", -3), "thresholds.at_risk", id="unknown thresholds key"
        ),
        pytest.param(
            _set("segments/enterprise/weight_multiplier", -1),
            "segments.enterprise.weight_multiplier",
            id="negative multiplier",
        ),
        pytest.param(_set("version", ""), "version", id="empty version"),
        pytest.param(_set("moments", ["promise.kept"]), "moments", id="moments not a mapping"),
    ],
)
def test_a_bad_policy_names_the_offending_key(
    mutate: Callable[[dict[str, Any]], None], key_path: str
) -> None:
    document = make_policy_document()
    mutate(document)
    assert key_path in policy_error(document)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("moments/promise.broken/weight", float("nan")),
        ("moments/promise.broken/weight", float("-inf")),
        ("moments/survey.nps/bands/0/weight", float("inf")),
        ("thresholds/at_risk_below", float("nan")),
        ("thresholds/recover_at_or_above", float("inf")),
        ("opening_balance", float("inf")),
        ("segments/enterprise/weight_multiplier", float("inf")),
    ],
)
def test_non_finite_numbers_are_rejected(path: str, value: float) -> None:
    document = make_policy_document()
    _set(path, value)(document)
    assert path.replace("/", ".") in policy_error(document)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("thresholds/recover_at_or_above", False),
        ("thresholds/at_risk_below", "-15"),
        ("moments/promise.broken/weight", True),
        ("half_life_days", "90"),
        ("segments/enterprise/weight_multiplier", "1.5"),
    ],
)
def test_a_number_must_be_a_number(path: str, value: object) -> None:
    """No coercion: `false` is not 0 and "90" is not 90 (a what-if must not quietly weigh 0)."""
    document = make_policy_document()
    _set(path, value)(document)
    assert path.replace("/", ".") in policy_error(document)


@pytest.mark.parametrize("document", [None, [], "version: 1", 42])
def test_a_policy_that_is_not_a_mapping_is_an_error(document: Any) -> None:
    assert policy_error(document)


def test_every_problem_is_reported_at_once() -> None:
    document = make_policy_document()
    document["colour"] = "red"
    document["half_life_days"] = -5
    message = policy_error(document)
    assert "colour" in message
    assert "half_life_days" in message


def test_load_policy_reads_yaml_and_names_the_file() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good.yaml"
        good.write_text(yaml.safe_dump(make_policy_document(version="from-file")), "utf-8")
        assert load_policy(good).version == "from-file"

        bad = Path(tmp) / "bad.yaml"
        document = make_policy_document()
        document["thresholds"]["recover_at_or_above"] = -100
        bad.write_text(yaml.safe_dump(document), "utf-8")
        with pytest.raises(PolicyError, match=r"bad\.yaml.*thresholds"):
            load_policy(bad)

        not_yaml = Path(tmp) / "broken.yaml"
        not_yaml.write_text("version: [unclosed\n", "utf-8")
        with pytest.raises(PolicyError, match=r"broken\.yaml.*not valid YAML"):
            load_policy(not_yaml)

        with pytest.raises(PolicyError, match=r"missing\.yaml.*cannot read"):
            load_policy(Path(tmp) / "missing.yaml")


def test_policy_is_immutable() -> None:
    policy = make_policy()
    with pytest.raises(ValueError, match="frozen"):
        policy.version = "changed"  # type: ignore[misc]


def test_default_policy_round_trips_through_its_dump() -> None:
    policy = load_policy()
    assert Policy.model_validate(copy.deepcopy(policy.model_dump())) == policy


# ---------------------------------------------------------------- weigh


def test_fixed_weight_times_magnitude_times_segment_multiplier() -> None:
    policy = make_policy()
    weighing = weigh(policy, type_="promise.broken", data=None, magnitude=2.5, segment="enterprise")
    assert weighing.amount == -12 * 2.5 * 1.5
    assert weighing.pillar == "integrity"
    assert weighing.outcome == "applied"
    assert weighing.reason is None


def test_no_segment_and_unknown_segment_weigh_at_one() -> None:
    policy = make_policy()
    for segment in (None, "smb", "no-such-segment"):
        weighing = weigh(policy, type_="renewal.signed", data={}, magnitude=1, segment=segment)
        assert weighing.amount == 15


def test_magnitude_zero_is_applied_with_amount_zero() -> None:
    weighing = weigh(make_policy(), type_="promise.broken", data=None, magnitude=0, segment=None)
    assert weighing.outcome == "applied"
    assert weighing.amount == 0
    assert math.copysign(1.0, weighing.amount) == 1.0  # no "-0.0" on the ledger


@given(
    weight=st.floats(-1000, 1000, allow_nan=False),
    magnitude=st.floats(0, 1000),
    multiplier=st.floats(0, 100),
)
def test_amount_is_the_product_for_any_numbers(
    weight: float, magnitude: float, multiplier: float
) -> None:
    policy = make_policy(
        moments={"m": {"weight": weight, "pillar": "p"}},
        segments={"s": {"weight_multiplier": multiplier}},
    )
    weighing = weigh(policy, type_="m", data=None, magnitude=magnitude, segment="s")
    assert weighing.amount == weight * magnitude * multiplier
    assert weighing.outcome == "applied"


@pytest.mark.parametrize(
    ("score", "weight"),
    [(0, -12), (3, -12), (6, -12), (6.0, -12), (7, 0), (8, 0), (9, 10), (9.5, 10), (10, 10)],
)
def test_bands_are_inclusive_at_both_ends(score: float, weight: float) -> None:
    weighing = weigh(
        make_policy(), type_="survey.nps", data={"score": score}, magnitude=1, segment=None
    )
    assert weighing.outcome == "applied"
    assert weighing.amount == weight
    assert weighing.pillar == "empathy"
    assert weighing.reason is None


def test_band_weight_is_scaled_by_magnitude_and_multiplier() -> None:
    weighing = weigh(
        make_policy(), type_="survey.nps", data={"score": 2}, magnitude=2, segment="enterprise"
    )
    assert weighing.amount == -12 * 2 * 1.5


@pytest.mark.parametrize(
    ("data", "reason_part"),
    [
        pytest.param(None, "missing", id="no data"),
        pytest.param({}, "missing", id="field absent"),
        pytest.param({"score": None}, "missing", id="field null"),
        pytest.param({"Score": 9}, "missing", id="field name is case-sensitive"),
        pytest.param({"score": "9"}, "not a number", id="string"),
        pytest.param({"score": True}, "not a number", id="bool"),
        pytest.param({"score": [9]}, "not a number", id="list"),
        pytest.param({"score": {"value": 9}}, "not a number", id="object"),
        pytest.param({"score": float("nan")}, "not a number", id="NaN"),
        pytest.param({"score": float("inf")}, "not a number", id="inf"),
        pytest.param({"score": 6.5}, "no band", id="between bands"),
        pytest.param({"score": -1}, "no band", id="below all bands"),
        pytest.param({"score": 11}, "no band", id="above all bands"),
    ],
)
def test_unbandable_field_is_unweighted_with_a_reason(
    data: dict[str, Any] | None, reason_part: str
) -> None:
    weighing = weigh(make_policy(), type_="survey.nps", data=data, magnitude=1, segment=None)
    assert weighing.outcome == "unweighted"
    assert weighing.amount == 0
    assert weighing.pillar == "empathy"
    assert weighing.reason is not None
    assert reason_part in weighing.reason
    assert "score" in weighing.reason


def test_unknown_type_is_unweighted_with_amount_zero() -> None:
    policy = make_policy(version="v-test")
    weighing = weigh(
        policy, type_="telepathy.attempted", data={"magnitude": 3}, magnitude=3, segment="smb"
    )
    assert weighing.outcome == "unweighted"
    assert weighing.amount == 0
    assert weighing.pillar is None
    assert weighing.reason is not None
    assert "telepathy.attempted" in weighing.reason
    assert "v-test" in weighing.reason


def test_every_default_moment_weighs() -> None:
    policy = load_policy()
    for type_, moment in policy.moments.items():
        data = {moment.field: moment.bands[0].min} if moment.field and moment.bands else None
        weighing = weigh(policy, type_=type_, data=data, magnitude=1, segment=None)
        assert weighing.outcome == "applied", type_
        assert weighing.pillar == moment.pillar
