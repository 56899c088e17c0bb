"""Transitions by time alone (README): dated at the crossing t*, the threshold as balance."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from service.domain import alerts
from service.domain.ledger import Account, Alert, Booking, book, settle
from service.domain.policy import Policy
from tests.domain.factories import T0, make_account, make_stored_event
from tests.support.policy import make_policy

HALF_LIFE = timedelta(seconds=10)
MS = timedelta(milliseconds=1)
RECOVERING = {"at_risk_below": -15, "recover_at_or_above": -3}
MOMENTS = {
    "win": {"weight": 20, "pillar": "advocacy"},
    "loss": {"weight": -20, "pillar": "advocacy"},
    "nudge": {"weight": -1, "pillar": "advocacy"},
}


def fast_policy(*, at_risk_below: float, recover_at_or_above: float) -> Policy:
    return make_policy(
        half_life_days=HALF_LIFE / timedelta(days=1),
        at_risk_below=at_risk_below,
        recover_at_or_above=recover_at_or_above,
        moments=MOMENTS,
    )


def opened(policy: Policy, type_: str, *, at: datetime = T0) -> tuple[Account, list[Alert]]:
    """An account opened by one event at `at`, booked at once."""
    booking = book([make_stored_event(seq=1, type=type_, effective_at=at)], {}, policy, now=at)
    return booking.accounts["c1"], booking.alerts


def test_a_recovery_by_decay_is_dated_at_the_crossing() -> None:
    policy = fast_policy(**RECOVERING)
    account, [fell] = opened(policy, "loss")
    assert (fell.kind, fell.at, account.status) == ("at_risk", T0, "at_risk")
    t_star = T0 + HALF_LIFE * math.log2(20 / 3)  # about 27.37 s
    assert account.next_transition_at is not None
    assert abs(account.next_transition_at - t_star) < MS

    # The sweeper runs late, as it does: 2.6 s after the crossing.
    swept, alert = settle(account, policy, now=T0 + timedelta(seconds=30), cause=None)

    assert alert is not None
    assert alert.kind == "recovered"
    assert abs(alert.at - t_star) < MS
    assert alert.balance == alert.threshold == -3
    assert (alert.cause_source, alert.cause_id) == (None, None)
    assert swept.status == "ok"
    assert swept.status_since == alert.at
    assert swept.next_transition_at is None


def test_a_fall_into_risk_by_silence_is_dated_at_the_crossing() -> None:
    policy = fast_policy(at_risk_below=5, recover_at_or_above=8)
    account, raised = opened(policy, "win")
    assert raised == []
    t_star = T0 + 2 * HALF_LIFE  # 20 halves to 5 in two half-lives

    swept, alert = settle(account, policy, now=T0 + timedelta(seconds=29.7), cause=None)

    assert alert is not None
    assert alert.kind == "at_risk"
    assert abs(alert.at - t_star) < MS
    assert alert.balance == alert.threshold == 5
    assert (swept.status, swept.status_since) == ("at_risk", alert.at)
    # Decay only takes it further from 8: nothing else is ever due.
    assert swept.next_transition_at is None


def test_before_the_crossing_nothing_changes() -> None:
    policy = fast_policy(**RECOVERING)
    account, _ = opened(policy, "loss")
    assert account.next_transition_at is not None
    early, alert = settle(account, policy, now=account.next_transition_at - MS, cause=None)
    assert alert is None
    assert early.status == "at_risk"
    assert early.status_since == T0


def at_risk_then(type_: str, *, seconds: float, evaluate: bool = True) -> tuple[Policy, Booking]:
    """An account at -20 (at_risk, recovering past -3 at t0 + 27.37 s), then one event `seconds`
    later booked with no sweep in between."""
    policy = fast_policy(**RECOVERING)
    account, _ = opened(policy, "loss")
    later = T0 + timedelta(seconds=seconds)
    event = make_stored_event(seq=2, type=type_, effective_at=later)
    return policy, book([event], {"c1": account}, policy, now=later, evaluate=evaluate)


def test_a_batch_applies_a_crossing_no_sweep_has_applied_yet_first() -> None:
    """Recovered by decay at t* (sweeper not there yet), then a debit at t0 + 28 s leaves the
    balance between the levels: the account is ok, recovered at t*, not at_risk."""
    policy, booking = at_risk_then("nudge", seconds=28)

    [recovered] = booking.alerts
    assert recovered.kind == "recovered"
    assert abs(recovered.at - (T0 + HALF_LIFE * math.log2(20 / 3))) < MS
    assert recovered.cause_source is None
    after = booking.accounts["c1"]
    assert after.status == "ok"
    assert -15 < after.balance(T0 + timedelta(seconds=28), policy) < -3


def test_a_crossing_then_an_event_that_undoes_it_are_two_alerts_in_order() -> None:
    _, booking = at_risk_then("loss", seconds=28)

    assert [(a.kind, a.cause_id) for a in booking.alerts] == [
        ("recovered", None),
        ("at_risk", "e2"),
    ]
    assert booking.alerts[0].at < booking.alerts[1].at == T0 + timedelta(seconds=28)
    assert booking.accounts["c1"].status_since == booking.alerts[1].at


def test_replay_books_without_applying_due_crossings() -> None:
    _, booking = at_risk_then("nudge", seconds=40, evaluate=False)
    assert booking.alerts == []
    assert booking.accounts["c1"].status == "at_risk"


def test_a_crossing_from_before_the_status_was_taken_is_dated_now() -> None:
    """An account left unevaluated (replay) can lie past its crossing: that crossing predates its
    status, so the transition is the present evaluation, at `now`."""
    policy = fast_policy(at_risk_below=5, recover_at_or_above=8)
    account = make_account(balance=20, at=T0)._replace(status_since=T0 + timedelta(seconds=25))
    now = T0 + timedelta(seconds=30)
    swept, alert = settle(account, policy, now=now, cause=None)
    assert alert is not None
    assert (alert.kind, alert.at, swept.status_since) == ("at_risk", now, now)


# ---------------------------------------------------------------- property: a fine-grained oracle


STEP = timedelta(milliseconds=5)


@given(
    balance=st.floats(-100, 100).filter(lambda b: abs(b) > 1e-3),
    at_risk_below=st.floats(-50, 50),
    gap=st.floats(0, 30),
    sweeps=st.lists(st.floats(0.05, 10), min_size=1, max_size=4),
)
def test_sweeps_at_any_times_give_the_transitions_of_a_continuous_watch(
    balance: float, at_risk_below: float, gap: float, sweeps: list[float]
) -> None:
    """Whenever the sweeper runs, it raises what watching the balance all along would: the same
    transitions (never more than one), each dated where the watch saw it."""
    levels = (at_risk_below, at_risk_below + gap)
    policy = make_policy(
        half_life_days=HALF_LIFE / timedelta(days=1),
        at_risk_below=levels[0],
        recover_at_or_above=levels[1],
    )

    def b(t: datetime) -> float:
        return balance * math.pow(2.0, -(t - T0) / HALF_LIFE)

    times = [T0 + timedelta(seconds=sum(sweeps[: i + 1])) for i in range(len(sweeps))]
    # A sweep landing on the very instant of a crossing decides a tie by rounding; leave it out.
    assume(all(not math.isclose(b(t), v, rel_tol=1e-9) for t in times for v in levels))
    start, _ = settle(make_account(balance=balance, at=T0), policy, now=T0, cause=("s", "e1"))

    watched: list[tuple[str, datetime]] = []
    status: alerts.Status = start.status
    t = T0
    while t < times[-1] + STEP:
        change = alerts.evaluate(status, b(min(t, times[-1])), policy.thresholds)
        if change:
            watched.append((change.kind, t))
            status = alerts.status_after(status, change)
        t += STEP

    swept: list[Alert] = []
    account = start
    for t in times:
        if account.next_transition_at is not None and account.next_transition_at <= t:
            account, alert = settle(account, policy, now=t, cause=None)
            assert alert is not None
            swept.append(alert)

    assert len(watched) <= 1
    assert [kind for kind, _ in watched] == [a.kind for a in swept]
    for (_, seen), alert in zip(watched, swept, strict=True):
        assert seen - STEP - MS <= alert.at <= seen
        assert alert.balance == alert.threshold
        assert math.isclose(b(alert.at), alert.threshold, rel_tol=1e-6)
    assert account.status == status


def test_a_balance_exactly_on_a_positive_risk_level_falls_below_it_at_once() -> None:
    policy = fast_policy(at_risk_below=20, recover_at_or_above=25)
    account, raised = opened(policy, "win")  # exactly 20: not below 20, so ok
    assert raised == []
    assert account.next_transition_at == T0
    swept, alert = settle(account, policy, now=T0 + timedelta(seconds=1), cause=None)
    assert alert is not None
    assert (alert.kind, alert.at, alert.balance, swept.status) == ("at_risk", T0, 20, "at_risk")
