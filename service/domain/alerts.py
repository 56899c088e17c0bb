"""The account status machine (README): ok ⇄ at_risk with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from service.domain.balance import Projection, next_crossing
from service.domain.policy import Thresholds

Status = Literal["ok", "at_risk"]
AlertKind = Literal["at_risk", "recovered"]


@dataclass(frozen=True, slots=True)
class Transition:
    kind: AlertKind
    balance: float
    threshold: float


def evaluate(status: Status, balance: float, thresholds: Thresholds) -> Transition | None:
    """The transition the balance calls for, if any; between the two levels nothing changes."""
    if status == "ok" and balance < thresholds.at_risk_below:
        return Transition("at_risk", balance, thresholds.at_risk_below)
    if status == "at_risk" and balance >= thresholds.recover_at_or_above:
        return Transition("recovered", balance, thresholds.recover_at_or_above)
    return None


def status_after(status: Status, transition: Transition | None) -> Status:
    if transition is None:
        return status
    return "at_risk" if transition.kind == "at_risk" else "ok"


def next_transition_at(
    status: Status,
    projection: Projection,
    thresholds: Thresholds,
    half_life_days: float | None,
) -> datetime | None:
    """When decay alone will move this account across its next threshold."""
    if status == "ok":
        # Only a fall through the level is a transition: from above it, toward 0.
        threshold = thresholds.at_risk_below
        if not projection.ref_balance >= threshold > 0:
            return None
        if projection.ref_balance == threshold and half_life_days is not None:
            return projection.ref_time  # on the level: decay takes it below at once
    else:
        threshold = thresholds.recover_at_or_above
        if not projection.ref_balance < threshold:
            return None
    return next_crossing(projection, threshold, half_life_days)
