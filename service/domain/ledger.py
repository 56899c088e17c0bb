"""Booking: what a batch of newly stored events does to the ledger, the accounts and the alerts.

Pure: the storage adapter hands in the locked accounts and the events that were new to the event
store, and writes back what `book` returns, all in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from service.domain import alerts
from service.domain.balance import Projection, rank_key
from service.domain.envelope import RESERVED_SOURCE
from service.domain.policy import Outcome, Policy, Thresholds, weigh

OPENED_TYPE = "relbank.account.opened"
SEGMENT_CHANGED_TYPE = "relbank.customer.segment_changed"


# NamedTuple rather than a frozen dataclass: one is built for every event of every batch, and a
# frozen dataclass's __init__ costs about three times as much (issue 8).
class StoredEvent(NamedTuple):
    """An event as the event store holds it (`seq` is its arrival order)."""

    seq: int
    source: str
    id: str
    type: str
    customer_id: str
    effective_at: datetime
    data: dict[str, Any] | None
    magnitude: float


class Account(NamedTuple):
    customer_id: str
    segment: str | None
    projection: Projection
    status: alerts.Status
    status_since: datetime
    opened_at: datetime
    last_event_at: datetime
    entries: int
    next_transition_at: datetime | None = None
    rank: tuple[int, float] = (0, 0.0)

    def balance(self, now: datetime, policy: Policy) -> float:
        return _balance(self.projection, now, policy.half_life_days)

    def thresholds(self, policy: Policy) -> Thresholds:
        return policy.thresholds_for(self.segment)


def _balance(projection: Projection, now: datetime, half_life_days: float | None) -> float:
    if projection.ref_time is None:
        return 0.0
    return projection.balance_at(max(now, projection.ref_time), half_life_days)


class Entry(NamedTuple):
    customer_id: str
    event_seq: int | None
    source: str
    id: str
    type: str
    pillar: str | None
    amount: float
    effective_at: datetime
    policy_version: str
    outcome: Outcome
    reason: str | None


@dataclass(frozen=True, slots=True)
class Alert:
    customer_id: str
    kind: alerts.AlertKind
    balance: float
    threshold: float
    at: datetime
    cause_source: str | None
    cause_id: str | None


class EventResult(NamedTuple):
    """What booking did with one event; `projection` is the account's right after it (the
    batch's earlier events for that customer, in arrival order, included)."""

    outcome: Outcome
    customer_id: str
    projection: Projection

    def balance(self, now: datetime, policy: Policy) -> float:
        """The balance at `now` right after the event (computed on demand: the Kafka path never
        asks, and it is a power of two per event)."""
        return _balance(self.projection, now, policy.half_life_days)


@dataclass(slots=True)
class Booking:
    entries: list[Entry] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    results: dict[int, EventResult] = field(default_factory=dict)


def new_account(customer_id: str, *, opened_at: datetime, now: datetime) -> Account:
    return Account(
        customer_id=customer_id,
        segment=None,
        projection=Projection(),
        status="ok",
        status_since=now,
        opened_at=opened_at,
        last_event_at=opened_at,
        entries=0,
    )


def settle(
    account: Account,
    policy: Policy,
    *,
    now: datetime,
    cause: tuple[str, str] | None,
    evaluate: bool = True,
) -> tuple[Account, Alert | None]:
    """Re-evaluate status at `now` and refresh the derived fields (next crossing, rank).

    With no `cause` the change is time's alone (the sweeper): a transition is dated at the
    crossing t* where decay took the balance to the threshold, not at `now`.
    """
    transition = None
    at = now
    thresholds = account.thresholds(policy)
    if evaluate:
        crossing = _decay_crossing(account, policy, now) if cause is None else None
        if crossing is not None:
            at, transition = crossing
        else:
            transition = alerts.evaluate(account.status, account.balance(now, policy), thresholds)
    status = alerts.status_after(account.status, transition)
    # Built field by field rather than with `dataclasses.replace`, which costs several times as
    # much: this runs for every customer of every batch.
    settled = Account(
        customer_id=account.customer_id,
        segment=account.segment,
        projection=account.projection,
        status=status,
        status_since=at if transition else account.status_since,
        opened_at=account.opened_at,
        last_event_at=account.last_event_at,
        entries=account.entries,
        next_transition_at=alerts.next_transition_at(
            status, account.projection, thresholds, policy.half_life_days
        ),
        rank=rank_key(account.projection, policy.half_life_days),
    )
    if transition is None:
        return settled, None
    alert = Alert(
        customer_id=account.customer_id,
        kind=transition.kind,
        balance=transition.balance,
        threshold=transition.threshold,
        at=at,
        cause_source=cause[0] if cause else None,
        cause_id=cause[1] if cause else None,
    )
    return settled, alert


def _decay_crossing(
    account: Account, policy: Policy, now: datetime
) -> tuple[datetime, alerts.Transition] | None:
    """The threshold crossing decay alone has brought due by `now`, if any.

    Decay moves a balance monotonically toward 0, and hysteresis keeps the two levels apart, so
    one crossing can be due at most: after falling below a positive `at_risk_below` the balance
    only shrinks further from `recover_at_or_above`, and after rising to a negative
    `recover_at_or_above` it only moves further from `at_risk_below`. A crossing from before the
    account took its status is no crossing (an unevaluated replayed account): None.
    """
    thresholds = account.thresholds(policy)
    t_star = alerts.next_transition_at(
        account.status, account.projection, thresholds, policy.half_life_days
    )
    if t_star is None or t_star > now or t_star < account.status_since:
        return None
    if account.status == "ok":
        return t_star, alerts.Transition(
            "at_risk", thresholds.at_risk_below, thresholds.at_risk_below
        )
    return t_star, alerts.Transition(
        "recovered", thresholds.recover_at_or_above, thresholds.recover_at_or_above
    )


def _opening_entry(customer_id: str, first: StoredEvent, policy: Policy) -> Entry:
    return Entry(
        customer_id=customer_id,
        event_seq=None,
        source=RESERVED_SOURCE,
        id=f"opened:{customer_id}",
        type=OPENED_TYPE,
        pillar=None,
        amount=policy.opening_balance,
        effective_at=first.effective_at,
        policy_version=policy.version,
        outcome="applied",
        reason=None,
    )


def _event_entry(event: StoredEvent, policy: Policy, segment: str | None) -> Entry:
    weighing = weigh(
        policy, type_=event.type, data=event.data, magnitude=event.magnitude, segment=segment
    )
    return Entry(
        customer_id=event.customer_id,
        event_seq=event.seq,
        source=event.source,
        id=event.id,
        type=event.type,
        pillar=weighing.pillar,
        amount=weighing.amount,
        effective_at=event.effective_at,
        policy_version=policy.version,
        outcome=weighing.outcome,
        reason=weighing.reason,
    )


def book(
    events: Sequence[StoredEvent],
    accounts: Mapping[str, Account],
    policy: Policy,
    *,
    now: datetime,
    evaluate: bool = True,
) -> Booking:
    """Weigh every new event, post it, and settle each touched account once.

    `events` are new to the event store; `accounts` holds the current state of every customer
    among them that already has an account. Events are taken in arrival order, so a segment change
    applies to the events that arrived after it. A decay crossing that fell due before the batch
    and that no sweep has applied yet is applied first, at its own time.
    """
    booking = Booking()
    by_customer: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.seq):
        by_customer[event.customer_id].append(event)
    h = policy.half_life_days
    for customer_id, customer_events in by_customer.items():
        account = accounts.get(customer_id)
        entries: list[Entry] = []
        if account is None:
            account = new_account(customer_id, opened_at=customer_events[0].effective_at, now=now)
            if policy.opening_balance:
                entries.append(_opening_entry(customer_id, customer_events[0], policy))
        elif evaluate and account.next_transition_at and account.next_transition_at <= now:
            account, crossed = settle(account, policy, now=now, cause=None)
            if crossed:
                booking.alerts.append(crossed)
        projection = account.projection
        for entry in entries:
            projection = projection.post(entry.amount, entry.effective_at, h)
        segment = account.segment
        last_event_at = account.last_event_at
        for event in customer_events:
            outcome: Outcome = "applied"
            if event.type == SEGMENT_CHANGED_TYPE and event.source == RESERVED_SOURCE:
                segment = (event.data or {}).get("segment")
            else:
                entry = _event_entry(event, policy, segment)
                entries.append(entry)
                projection = projection.post(entry.amount, entry.effective_at, h)
                last_event_at = max(last_event_at, event.effective_at)
                outcome = entry.outcome
            booking.results[event.seq] = EventResult(outcome, customer_id, projection)
        booking.entries.extend(entries)
        account = Account(  # not `replace`: see `settle`
            customer_id=customer_id,
            segment=segment,
            projection=projection,
            status=account.status,
            status_since=account.status_since,
            opened_at=account.opened_at,
            last_event_at=last_event_at,
            entries=account.entries + len(entries),
            next_transition_at=account.next_transition_at,
            rank=account.rank,
        )
        last = customer_events[-1]
        account, alert = settle(
            account, policy, now=now, cause=(last.source, last.id), evaluate=evaluate
        )
        booking.accounts[customer_id] = account
        if alert:
            booking.alerts.append(alert)
    return booking
