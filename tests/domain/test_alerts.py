"""The account status machine (README): ok ⇄ at_risk with hysteresis."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.alerts import (
    Status,
    Transition,
    evaluate,
    next_transition_at,
    status_after,
)
from service.domain.balance import Projection
from service.domain.policy import Thresholds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_thresholds(*, at_risk_below: float = -15, recover_at_or_above: float = -5) -> Thresholds:
    return Thresholds(at_risk_below=at_risk_below, recover_at_or_above=recover_at_or_above)


THRESHOLDS = make_thresholds()


@pytest.mark.parametrize(
    ("status", "balance", "expected"),
    [
        ("ok", 10.0, None),
        ("ok", -5.0, None),
        ("ok", -10.0, None),
        ("ok", -15.0, None),
        ("ok", math.nextafter(-15.0, -math.inf), "at_risk"),
        ("ok", -15.0001, "at_risk"),
        ("ok", -100.0, "at_risk"),
        ("at_risk", -100.0, None),
        ("at_risk", -15.0, None),
        ("at_risk", -10.0, None),
        ("at_risk", math.nextafter(-5.0, -math.inf), None),
        ("at_risk", -5.0, "recovered"),
        ("at_risk", 0.0, "recovered"),
        ("at_risk", 50.0, "recovered"),
    ],
)
def test_transitions(status: Status, balance: float, expected: str | None) -> None:
    transition = evaluate(status, balance, THRESHOLDS)
    if expected is None:
        assert transition is None
        assert status_after(status, transition) == status
        return
    assert transition is not None
    assert transition.kind == expected
    assert transition.balance == balance
    if expected == "at_risk":
        assert transition.threshold == -15
        assert status_after(status, transition) == "at_risk"
    else:
        assert transition.threshold == -5
        assert status_after(status, transition) == "ok"


@given(
    low=st.floats(-1e6, 1e6),
    width=st.floats(0, 1e6),
    fraction=st.floats(0, 1),
    status=st.sampled_from(["ok", "at_risk"]),
)
def test_between_the_levels_nothing_changes(
    low: float, width: float, fraction: float, status: Status
) -> None:
    thresholds = make_thresholds(at_risk_below=low, recover_at_or_above=low + width)
    balance = low + width * fraction
    if not thresholds.at_risk_below <= balance < thresholds.recover_at_or_above:
        return
    assert evaluate(status, balance, thresholds) is None


@given(
    at_risk_below=st.floats(-1e6, 1e6),
    width=st.floats(0, 1e6),
    balance=st.floats(-1e7, 1e7),
    status=st.sampled_from(["ok", "at_risk"]),
)
def test_status_after_matches_the_levels(
    at_risk_below: float, width: float, balance: float, status: Status
) -> None:
    thresholds = make_thresholds(
        at_risk_below=at_risk_below, recover_at_or_above=at_risk_below + width
    )
    new = status_after(status, evaluate(status, balance, thresholds))
    if balance < thresholds.at_risk_below:
        assert new == "at_risk"
    elif balance >= thresholds.recover_at_or_above:
        assert new == "ok"
    else:
        assert new == status
    # Settling again at the same balance is a no-op.
    assert evaluate(new, balance, thresholds) is None


def test_equal_levels_leave_no_dead_band() -> None:
    thresholds = make_thresholds(at_risk_below=-10, recover_at_or_above=-10)
    assert evaluate("ok", -10, thresholds) is None
    assert evaluate("at_risk", -10, thresholds) == Transition("recovered", -10, -10)
    assert evaluate("ok", -10.5, thresholds) == Transition("at_risk", -10.5, -10)


def test_positive_threshold_makes_silence_a_risk() -> None:
    thresholds = make_thresholds(at_risk_below=5, recover_at_or_above=10)
    assert evaluate("ok", 0.0, thresholds) == Transition("at_risk", 0.0, 5)


def test_status_after_without_transition_keeps_the_status() -> None:
    assert status_after("ok", None) == "ok"
    assert status_after("at_risk", None) == "at_risk"
    assert status_after("ok", Transition("at_risk", -20, -15)) == "at_risk"
    assert status_after("at_risk", Transition("recovered", 0, -5)) == "ok"


def test_at_risk_account_recovers_as_a_negative_balance_decays() -> None:
    projection = Projection(-20, T0)
    at = next_transition_at("at_risk", projection, THRESHOLDS, 90)
    assert at == T0 + timedelta(days=180)  # -20 → -5 in two half-lives
    second = timedelta(seconds=1)
    assert evaluate("at_risk", projection.balance_at(at - second, 90), THRESHOLDS) is None
    after = evaluate("at_risk", projection.balance_at(at + second, 90), THRESHOLDS)
    assert after is not None
    assert after.kind == "recovered"


def test_ok_account_falls_at_risk_when_a_positive_threshold_is_reached() -> None:
    thresholds = make_thresholds(at_risk_below=5, recover_at_or_above=10)
    projection = Projection(20, T0)
    at = next_transition_at("ok", projection, thresholds, 30)
    assert at == T0 + timedelta(days=60)  # 20 → 5 in two half-lives
    second = timedelta(seconds=1)
    assert evaluate("ok", projection.balance_at(at - second, 30), thresholds) is None
    after = evaluate("ok", projection.balance_at(at + second, 30), thresholds)
    assert after is not None
    assert after.kind == "at_risk"


@pytest.mark.parametrize(
    ("status", "projection", "thresholds", "h"),
    [
        pytest.param("ok", Projection(-10, T0), THRESHOLDS, 90.0, id="ok, decaying away"),
        pytest.param("ok", Projection(30, T0), THRESHOLDS, 90.0, id="ok, positive"),
        pytest.param("at_risk", Projection(-20, T0), THRESHOLDS, None, id="no decay"),
        pytest.param("ok", Projection(), THRESHOLDS, 90.0, id="no entries"),
        pytest.param(
            "at_risk",
            Projection(-20, T0),
            make_thresholds(at_risk_below=-10, recover_at_or_above=0),
            90.0,
            id="recover at 0 is never reached",
        ),
        pytest.param(
            "at_risk",
            Projection(3, T0),
            make_thresholds(at_risk_below=5, recover_at_or_above=10),
            90.0,
            id="positive, below recovery, decaying away",
        ),
    ],
)
def test_no_time_driven_transition(
    status: Status, projection: Projection, thresholds: Thresholds, h: float | None
) -> None:
    assert next_transition_at(status, projection, thresholds, h) is None


def test_next_transition_uses_the_threshold_of_the_current_status() -> None:
    # -40 passes -15 (at_risk_below) before -5 (recover_at_or_above); an at_risk account
    # recovers only at the second.
    projection = Projection(-40, T0)
    recover = next_transition_at("at_risk", projection, THRESHOLDS, 90)
    assert recover == T0 + timedelta(days=270)  # -40 → -5: three half-lives


@pytest.mark.parametrize(
    ("status", "balance", "thresholds"),
    [
        # ok but below at_risk_below (book(..., evaluate=False) leaves such accounts): decay
        # lifts -40 toward 0, which never makes an ok account at_risk.
        pytest.param("ok", -40.0, THRESHOLDS, id="ok below the risk level"),
        # at_risk but above a positive recovery level: decay lowers it, never a recovery.
        pytest.param(
            "at_risk",
            40.0,
            make_thresholds(at_risk_below=5, recover_at_or_above=10),
            id="at_risk above the recovery level",
        ),
    ],
)
def test_a_crossing_in_the_wrong_direction_is_no_transition(
    status: Status, balance: float, thresholds: Thresholds
) -> None:
    assert next_transition_at(status, Projection(balance, T0), thresholds, 90) is None
