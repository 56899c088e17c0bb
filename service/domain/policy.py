"""The weighting policy (README): load, validate, and weigh one event.

`schemas/policy.schema.json` is generated from `Policy`; a test fails when the two drift.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "default_policy.yaml"


class _Strict(BaseModel):
    # Strict: a number is a number (`false` or "5" is not a threshold); ints are fine as floats.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Thresholds(_Strict):
    at_risk_below: float = Field(description="ok -> at_risk when the balance falls below this.")
    recover_at_or_above: float = Field(
        description="at_risk -> ok when the balance is at or above this; >= at_risk_below."
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> Thresholds:
        if self.recover_at_or_above < self.at_risk_below:
            raise ValueError("recover_at_or_above must be >= at_risk_below")
        return self


class Band(_Strict):
    min: float
    max: float
    weight: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class Moment(_Strict):
    pillar: str = Field(min_length=1)
    weight: float | None = Field(default=None, description="Fixed weight of the moment.")
    field: str | None = Field(default=None, description="Numeric field of `data` picking a band.")
    bands: list[Band] | None = Field(default=None, min_length=1)
    description: str | None = None

    @model_validator(mode="after")
    def _weight_or_bands(self) -> Moment:
        fixed = self.weight is not None
        banded = self.field is not None or self.bands is not None
        if fixed == banded:
            raise ValueError("give either `weight`, or `field` with `bands`")
        if banded and (self.field is None or self.bands is None):
            raise ValueError("`field` and `bands` go together")
        return self


class Segment(_Strict):
    weight_multiplier: float = Field(default=1.0, ge=0)
    thresholds: Thresholds | None = None
    description: str | None = None


class Policy(_Strict):
    """A weighting policy file."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, title="relbank weighting policy"
    )

    version: str = Field(min_length=1, max_length=128)
    half_life_days: Annotated[float, Field(gt=0)] | None = Field(
        description="Half-life of every entry, in days; null for no decay."
    )
    opening_balance: float = 0.0
    thresholds: Thresholds
    moments: dict[str, Moment]
    segments: dict[str, Segment] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _finite(self) -> Policy:
        if self.half_life_days is not None and not math.isfinite(self.half_life_days):
            raise ValueError("half_life_days must be finite or null")
        return self

    def thresholds_for(self, segment: str | None) -> Thresholds:
        seg = self.segments.get(segment) if segment else None
        return seg.thresholds if seg and seg.thresholds else self.thresholds

    def multiplier_for(self, segment: str | None) -> float:
        seg = self.segments.get(segment) if segment else None
        return seg.weight_multiplier if seg else 1.0


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the offending key."""


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_policy(document: Any, *, origin: str = "policy") -> Policy:
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{_key_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{origin}: {problems}") from None


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy YAML file (the shipped default when `path` is None)."""
    path = path or DEFAULT_POLICY_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    return parse_policy(document, origin=str(path))


Outcome = Literal["applied", "unweighted"]


class Weighing(NamedTuple):
    """What the policy makes of one event."""

    amount: float
    pillar: str | None
    outcome: Outcome
    reason: str | None


def weigh(
    policy: Policy,
    *,
    type_: str,
    data: dict[str, Any] | None,
    magnitude: float,
    segment: str | None,
) -> Weighing:
    """amount = weight × magnitude × segment multiplier; unknown or unbandable → 0, unweighted."""
    moment = policy.moments.get(type_)
    if moment is None:
        return Weighing(
            0.0, None, "unweighted", f"type {type_!r} is not in policy {policy.version}"
        )
    weight = moment.weight
    if weight is None:
        assert moment.field is not None
        assert moment.bands is not None
        value = (data or {}).get(moment.field)
        if value is None:
            return Weighing(0.0, moment.pillar, "unweighted", f"data.{moment.field} is missing")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return Weighing(
                0.0, moment.pillar, "unweighted", f"data.{moment.field} is not a number"
            )
        band = next((b for b in moment.bands if b.min <= value <= b.max), None)
        if band is None:
            return Weighing(
                0.0, moment.pillar, "unweighted", f"data.{moment.field}={value} is in no band"
            )
        weight = band.weight
    amount = weight * magnitude * policy.multiplier_for(segment)
    return Weighing(amount + 0.0, moment.pillar, "applied", None)
