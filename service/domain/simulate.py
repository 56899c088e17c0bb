"""What-if (README `POST /v1/policy/simulate`): the event store replayed under a candidate
policy in memory, and compared with the accounts as they stand.

Pure: the caller streams the event store into `Simulation.fold` in arrival order, a page at a
time, then hands the current accounts to `Simulation.compare`. Only per-account state is kept
(one `Account` per customer), never per-event state, so memory does not grow with the store.

The fold is replay's own (`book` without evaluation: segment changes apply to the events that
arrive after them, the opening entry goes at the first event to arrive), and the status is
settled as replay settles it, so simulating a policy predicts what `relbank replay --policy` with
it would make of the same store: each account starts from its *current* status, carried forward,
and is evaluated once, at `at`, against the candidate's thresholds for the segment its history
leaves it in. Between the two levels the current status stays (hysteresis), so a candidate that
only moves thresholds can leave a balance between its levels in either status. An account whose
time-driven transition is due but not yet applied by the sweeper counts as a change, as replay
would make it one.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.domain.alerts import Status
from service.domain.balance import Projection
from service.domain.envelope import RESERVED_SOURCE
from service.domain.ledger import Account, StoredEvent, book, settle
from service.domain.policy import Policy

MOVERS = 100
# Settled as replay settles: by the rebuild (a cause), not by time alone (the sweeper's None).
_REBUILD = (RESERVED_SOURCE, "simulate")


@dataclass(frozen=True, slots=True)
class Mover:
    customer_id: str
    balance_now: float
    balance_simulated: float
    status_now: Status
    status_simulated: Status

    @property
    def change(self) -> float:
        return self.balance_simulated - self.balance_now


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The answer of a simulation; balances are B(`at`)."""

    policy_version: str
    at: datetime
    events: int
    accounts: int
    at_risk_now: int
    at_risk_simulated: int
    to_at_risk: int
    to_ok: int
    movers: list[Mover]


def balance_at(projection: Projection, at: datetime, half_life_days: float | None) -> float:
    if projection.ref_time is None:
        return 0.0
    return projection.balance_at(max(at, projection.ref_time), half_life_days)


def moved(before: float, after: float) -> bool:
    """A change beyond floating-point rounding (README: relative 1e-9)."""
    return not math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-9)


class Simulation:
    """The candidate policy's accounts, folded from the event store one page at a time."""

    def __init__(self, policy: Policy, *, at: datetime) -> None:
        self.policy = policy
        self.at = at
        self.events = 0
        self._rebuilt: dict[str, Account] = {}

    def fold(self, page: Sequence[StoredEvent]) -> None:
        """The next page of the event store, in arrival (seq) order."""
        booking = book(page, self._rebuilt, self.policy, now=self.at, evaluate=False)
        self._rebuilt.update(booking.accounts)
        self.events += len(page)

    def compare(
        self,
        current: Mapping[str, Account],
        *,
        half_life_now: float | None,
        limit: int = MOVERS,
    ) -> WhatIf:
        """The simulated accounts against `current` (read under `half_life_now`, the half-life
        the stored projections were computed under). Movers: the `limit` accounts whose balance
        changes most (beyond rounding), largest first, ties by customer id."""
        customers = sorted(self._rebuilt.keys() | current.keys())
        counts = {"at_risk_now": 0, "at_risk_simulated": 0, "to_at_risk": 0, "to_ok": 0}

        def outcomes() -> Iterator[Mover]:
            for customer_id in customers:
                mover = self._outcome(customer_id, current.get(customer_id), half_life_now)
                counts["at_risk_now"] += mover.status_now == "at_risk"
                counts["at_risk_simulated"] += mover.status_simulated == "at_risk"
                if mover.status_now != mover.status_simulated:
                    counts["to_at_risk" if mover.status_simulated == "at_risk" else "to_ok"] += 1
                if moved(mover.balance_now, mover.balance_simulated):
                    yield mover

        # nlargest is stable: among equal changes the sorted (customer id) order stands.
        movers = heapq.nlargest(limit, outcomes(), key=lambda m: abs(m.change))
        return WhatIf(
            policy_version=self.policy.version,
            at=self.at,
            events=self.events,
            accounts=len(customers),
            movers=movers,
            **counts,
        )

    def _outcome(self, customer_id: str, now: Account | None, half_life_now: float | None) -> Mover:
        rebuilt = self._rebuilt.get(customer_id)
        if rebuilt is None:
            # No event in the store (none in practice: every account opens with one): replay
            # leaves such an account as it stands, read under the candidate's half-life.
            assert now is not None
            simulated = now
        elif now is None:
            # New since the accounts were read (not in one snapshot): a new account starts ok.
            simulated, _ = settle(rebuilt, self.policy, now=self.at, cause=_REBUILD)
        else:
            carried = rebuilt._replace(status=now.status, status_since=now.status_since)
            simulated, _ = settle(carried, self.policy, now=self.at, cause=_REBUILD)
        return Mover(
            customer_id=customer_id,
            balance_now=balance_at(now.projection, self.at, half_life_now) if now else 0.0,
            balance_simulated=balance_at(simulated.projection, self.at, self.policy.half_life_days),
            status_now=now.status if now else "ok",
            status_simulated=simulated.status,
        )
