"""The one way tests make a policy: the shipped default policy with keys replaced."""

from __future__ import annotations

import copy
from typing import Any

from service.domain.policy import Policy, parse_policy
from tests.support.oracle import read_policy


def make_policy_document(
    *,
    at_risk_below: float | None = None,
    recover_at_or_above: float | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """The default policy file as plain data (what `yaml.safe_load` gives), its top-level keys
    replaced by `changes` (`version=`, `half_life_days=None`, `moments={...}`, ...) and either
    level of its thresholds by `at_risk_below=` / `recover_at_or_above=`."""
    document = copy.deepcopy(read_policy())
    document.update(copy.deepcopy(changes))
    thresholds = dict(document["thresholds"])
    if at_risk_below is not None:
        thresholds["at_risk_below"] = at_risk_below
    if recover_at_or_above is not None:
        thresholds["recover_at_or_above"] = recover_at_or_above
    document["thresholds"] = thresholds
    return document


def make_policy(
    *,
    at_risk_below: float | None = None,
    recover_at_or_above: float | None = None,
    **changes: Any,
) -> Policy:
    """`make_policy_document(...)` parsed as the service parses a policy file."""
    return parse_policy(
        make_policy_document(
            at_risk_below=at_risk_below, recover_at_or_above=recover_at_or_above, **changes
        )
    )
