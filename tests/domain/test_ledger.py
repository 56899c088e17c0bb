"""Booking a batch (README): entries, opening balance, segments, status and alerts."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.balance import balance_from_entries, rank_key
from service.domain.ledger import (
    OPENED_TYPE,
    SEGMENT_CHANGED_TYPE,
    Account,
    Booking,
    Entry,
    StoredEvent,
    book,
)
from tests.domain.factories import T0, make_account, make_stored_event
from tests.support.policy import make_policy

NOW = T0 + timedelta(days=10)
DAY = timedelta(days=1)


def ledger_balance(entries: list[Entry], at: datetime, h: float | None) -> float:
    return balance_from_entries([(e.amount, e.effective_at) for e in entries], at, h)


def segment_change(*, seq: int, segment: str | None, customer_id: str = "c1") -> StoredEvent:
    return make_stored_event(
        seq=seq,
        source="relbank",
        id=f"segment-{seq}",
        type=SEGMENT_CHANGED_TYPE,
        customer_id=customer_id,
        effective_at=T0 + seq * timedelta(hours=1),
        data={"segment": segment},
        magnitude=1.0,
    )


def amounts_by_seq(booking: Booking) -> dict[int | None, float]:
    return {e.event_seq: e.amount for e in booking.entries}


# ---------------------------------------------------------------- entries


def test_each_event_is_weighed_into_an_entry() -> None:
    policy = make_policy(version="v-ledger")
    event = make_stored_event(seq=7, type="promise.broken", effective_at=T0, magnitude=2)
    booking = book([event], {}, policy, now=NOW)
    [entry] = booking.entries
    assert entry == Entry(
        customer_id="c1",
        event_seq=7,
        source="zendesk",
        id="e7",
        type="promise.broken",
        pillar="integrity",
        amount=-24.0,
        effective_at=T0,
        policy_version="v-ledger",
        outcome="applied",
        reason=None,
    )
    assert booking.results[7].outcome == "applied"
    assert booking.results[7].customer_id == "c1"


def test_unweighted_events_are_booked_with_amount_zero_and_a_reason() -> None:
    events = [
        make_stored_event(seq=1, type="telepathy.attempted"),
        make_stored_event(seq=2, type="survey.nps", data={"comment": "no score"}),
        make_stored_event(seq=3, type="survey.nps", data={"score": 6.5}),
    ]
    booking = book(events, {}, make_policy(), now=NOW)
    assert len(booking.entries) == 3
    for entry in booking.entries:
        assert entry.amount == 0
        assert entry.outcome == "unweighted"
        assert entry.reason
    assert [e.pillar for e in booking.entries] == [None, "empathy", "empathy"]
    assert {seq: r.outcome for seq, r in booking.results.items()} == {
        1: "unweighted",
        2: "unweighted",
        3: "unweighted",
    }
    account = booking.accounts["c1"]
    assert account.entries == 3
    assert account.balance(NOW, make_policy()) == 0


def test_customers_are_booked_apart() -> None:
    events = [
        make_stored_event(seq=1, customer_id="a", type="renewal.signed"),
        make_stored_event(seq=2, customer_id="b", type="promise.broken"),
        make_stored_event(seq=3, customer_id="a", type="promise.broken", effective_at=T0 + DAY),
    ]
    policy = make_policy(half_life_days=None)
    booking = book(events, {}, policy, now=NOW)
    assert set(booking.accounts) == {"a", "b"}
    assert booking.accounts["a"].balance(NOW, policy) == 3
    assert booking.accounts["b"].balance(NOW, policy) == -12
    assert booking.accounts["a"].entries == 2
    assert booking.accounts["a"].last_event_at == T0 + DAY
    assert {e.customer_id for e in booking.entries if e.event_seq in (1, 3)} == {"a"}


def test_the_projection_matches_the_ledger_it_wrote() -> None:
    policy = make_policy(opening_balance=5)
    events = [
        make_stored_event(seq=i, type=t, effective_at=T0 + timedelta(hours=h))
        for i, (t, h) in enumerate(
            [("renewal.signed", 50), ("promise.broken", 3), ("cancellation.requested", 100)],
            start=1,
        )
    ]
    booking = book(events, {}, policy, now=NOW)
    account = booking.accounts["c1"]
    want = ledger_balance(booking.entries, NOW, policy.half_life_days)
    assert math.isclose(account.balance(NOW, policy), want, rel_tol=1e-12)
    assert account.rank == rank_key(account.projection, policy.half_life_days)


# ---------------------------------------------------------------- opening balance


def test_opening_balance_is_an_entry_at_the_first_arrival() -> None:
    policy = make_policy(opening_balance=10)
    # seq 1 arrives first but happened later than seq 2.
    events = [
        make_stored_event(seq=2, effective_at=T0),
        make_stored_event(seq=1, effective_at=T0 + 2 * DAY),
    ]
    booking = book(events, {}, policy, now=NOW)
    opened = [e for e in booking.entries if e.type == OPENED_TYPE]
    assert len(opened) == 1
    [entry] = opened
    assert entry.event_seq is None
    assert entry.source == "relbank"
    assert entry.customer_id == "c1"
    assert entry.amount == 10
    assert entry.effective_at == T0 + 2 * DAY
    assert entry.outcome == "applied"
    assert entry.policy_version == policy.version
    account = booking.accounts["c1"]
    assert account.opened_at == T0 + 2 * DAY
    assert account.last_event_at == T0 + 2 * DAY
    assert account.entries == 3
    assert math.isclose(
        account.balance(NOW, policy),
        ledger_balance(booking.entries, NOW, policy.half_life_days),
        rel_tol=1e-12,
    )


def test_no_opening_entry_when_the_policy_opens_at_zero() -> None:
    booking = book([make_stored_event(seq=1)], {}, make_policy(opening_balance=0), now=NOW)
    assert [e.type for e in booking.entries] == ["support.resolved_first_contact"]
    assert booking.accounts["c1"].entries == 1
    assert booking.accounts["c1"].opened_at == T0


def test_no_opening_entry_for_an_existing_account() -> None:
    existing = make_account(balance=3.0, at=T0)
    booking = book(
        [make_stored_event(seq=5, effective_at=T0 + DAY)],
        {"c1": existing},
        make_policy(opening_balance=10),
        now=NOW,
    )
    assert OPENED_TYPE not in {e.type for e in booking.entries}
    account = booking.accounts["c1"]
    assert account.opened_at == existing.opened_at
    assert account.entries == existing.entries + 1


# ---------------------------------------------------------------- segments


def test_segment_change_applies_to_later_arrivals() -> None:
    policy = make_policy(half_life_days=None)
    events = [
        make_stored_event(seq=3, type="promise.broken", effective_at=T0),  # arrives after
        segment_change(seq=2, segment="enterprise"),
        make_stored_event(seq=1, type="promise.broken", effective_at=T0 + 3 * DAY),  # before
    ]
    booking = book(events, {}, policy, now=NOW)
    assert amounts_by_seq(booking) == {1: -12.0, 3: -18.0}
    assert booking.results[2].outcome == "applied"
    account = booking.accounts["c1"]
    assert account.segment == "enterprise"
    assert account.entries == 2  # the segment change is no ledger entry
    assert account.balance(NOW, policy) == -30


def test_segment_change_of_an_existing_account() -> None:
    policy = make_policy(half_life_days=None)
    existing = make_account(segment="enterprise", balance=-20.0)
    events = [
        make_stored_event(seq=10, type="promise.broken"),
        segment_change(seq=11, segment=None),
        make_stored_event(seq=12, type="promise.broken"),
    ]
    booking = book(events, {"c1": existing}, policy, now=NOW)
    assert amounts_by_seq(booking) == {10: -18.0, 12: -12.0}
    assert booking.accounts["c1"].segment is None


def test_segment_change_from_another_source_is_just_an_unknown_type() -> None:
    policy = make_policy(half_life_days=None)
    forged = make_stored_event(
        seq=1, source="zendesk", type=SEGMENT_CHANGED_TYPE, data={"segment": "enterprise"}
    )
    booking = book([forged, make_stored_event(seq=2, type="promise.broken")], {}, policy, now=NOW)
    assert booking.accounts["c1"].segment is None
    assert amounts_by_seq(booking) == {1: 0.0, 2: -12.0}
    assert booking.results[1].outcome == "unweighted"


def test_segment_thresholds_decide_the_status() -> None:
    policy = make_policy(half_life_days=None)
    events = [
        segment_change(seq=1, segment="enterprise"),
        make_stored_event(seq=2, type="cancellation.requested", effective_at=T0),  # -30
    ]
    booking = book(events, {}, policy, now=NOW)
    [alert] = booking.alerts
    assert alert.threshold == -25
    assert alert.balance == -30
    # The same events without the segment: -20 is below the default -15 too, but -20 against
    # the enterprise level of -25 is not.
    existing = make_account(segment="enterprise", balance=0.0)
    quiet = book(
        [make_stored_event(seq=3, type="cancellation.requested", magnitude=2 / 3)],
        {"c1": existing},
        policy,
        now=NOW,
    )
    assert math.isclose(quiet.accounts["c1"].balance(NOW, policy), -20.0)
    assert quiet.alerts == []
    assert quiet.accounts["c1"].status == "ok"


# ---------------------------------------------------------------- status and alerts


def test_a_new_account_is_evaluated_at_once_and_alerts_with_its_last_event() -> None:
    policy = make_policy()
    events = [
        make_stored_event(seq=4, source="crm", id="renew-1", type="renewal.signed"),
        make_stored_event(seq=9, source="billing", id="cancel-1", type="cancellation.requested"),
        make_stored_event(seq=6, source="zendesk", id="broken-1", type="promise.broken"),
    ]
    booking = book(events, {}, policy, now=NOW)
    account = booking.accounts["c1"]
    assert account.status == "at_risk"
    assert account.status_since == NOW
    [alert] = booking.alerts
    assert alert.customer_id == "c1"
    assert alert.kind == "at_risk"
    assert alert.threshold == -15
    assert alert.at == NOW
    assert math.isclose(alert.balance, account.balance(NOW, policy), rel_tol=1e-12)
    assert alert.balance < -15
    assert (alert.cause_source, alert.cause_id) == ("billing", "cancel-1")
    # at_risk now: it recovers with time as the negative balance decays.
    assert account.next_transition_at is not None
    assert account.next_transition_at > NOW


def test_a_backfilled_debit_leaves_no_transition_due_in_the_past() -> None:
    # -40, 300 days ago, is about -4 now: ok, and decay only lifts it further toward 0. The
    # crossing of -15 (upward, 127 days after the event) is no transition; were it kept as
    # next_transition_at it would be in the past, and the sweeper would pick the account up
    # again on every sweep without ever changing it.
    policy = make_policy()
    old = make_stored_event(
        seq=1, type="cancellation.requested", magnitude=2, effective_at=NOW - 300 * DAY
    )
    booking = book([old], {}, policy, now=NOW)
    account = booking.accounts["c1"]
    assert account.status == "ok"
    assert booking.alerts == []
    assert account.next_transition_at is None or account.next_transition_at > NOW


def test_a_new_account_between_the_levels_stays_ok() -> None:
    booking = book([make_stored_event(type="promise.broken")], {}, make_policy(), now=NOW)
    assert booking.alerts == []
    assert booking.accounts["c1"].status == "ok"
    assert booking.accounts["c1"].status_since == NOW


def test_an_at_risk_account_recovers_with_a_credit() -> None:
    policy = make_policy(half_life_days=None)
    existing = make_account(balance=-20.0, status="at_risk")
    booking = book(
        [make_stored_event(seq=3, source="crm", id="r", type="renewal.signed")],
        {"c1": existing},
        policy,
        now=NOW,
    )
    [alert] = booking.alerts
    assert alert.kind == "recovered"
    assert alert.balance == -5
    assert alert.threshold == -5
    assert (alert.cause_source, alert.cause_id) == ("crm", "r")
    account = booking.accounts["c1"]
    assert account.status == "ok"
    assert account.status_since == NOW


def test_hysteresis_holds_across_a_batch() -> None:
    policy = make_policy(half_life_days=None)
    existing = make_account(balance=-20.0, status="at_risk")
    booking = book(
        [make_stored_event(seq=3, type="support.resolved_first_contact")],  # -14
        {"c1": existing},
        policy,
        now=NOW,
    )
    assert booking.alerts == []
    assert booking.accounts["c1"].status == "at_risk"
    assert booking.accounts["c1"].status_since == existing.status_since


def test_evaluate_false_raises_no_alerts() -> None:
    policy = make_policy()
    events = [make_stored_event(seq=1, type="cancellation.requested", magnitude=3)]
    booking = book(events, {}, policy, now=NOW, evaluate=False)
    assert booking.alerts == []
    account = booking.accounts["c1"]
    assert account.status == "ok"
    assert account.balance(NOW, policy) < -15
    assert account.rank == rank_key(account.projection, policy.half_life_days)
    # Entries and results are booked all the same.
    assert [e.amount for e in booking.entries] == [-60.0]
    assert booking.results[1].outcome == "applied"


def test_evaluate_false_keeps_an_at_risk_status() -> None:
    policy = make_policy(half_life_days=None)
    existing = make_account(balance=-20.0, status="at_risk")
    booking = book(
        [make_stored_event(seq=2, type="renewal.signed", magnitude=2)],
        {"c1": existing},
        policy,
        now=NOW,
        evaluate=False,
    )
    assert booking.alerts == []
    assert booking.accounts["c1"].status == "at_risk"


def test_accounts_not_in_the_batch_are_left_alone() -> None:
    other = make_account(customer_id="other", balance=-100.0)
    booking = book([make_stored_event(seq=1)], {"other": other}, make_policy(), now=NOW)
    assert set(booking.accounts) == {"c1"}


def test_an_empty_batch_books_nothing() -> None:
    booking = book([], {"c1": make_account()}, make_policy(), now=NOW)
    assert booking == Booking()


def test_backfill_into_an_existing_account() -> None:
    policy = make_policy()
    existing = make_account(balance=10.0, at=T0 + 5 * DAY)
    booking = book(
        [make_stored_event(seq=3, type="promise.broken", effective_at=T0)],
        {"c1": existing},
        policy,
        now=NOW,
    )
    account = booking.accounts["c1"]
    assert account.projection.ref_time == T0 + 5 * DAY
    assert account.last_event_at == T0 + 5 * DAY
    want = balance_from_entries([(10.0, T0 + 5 * DAY), (-12.0, T0)], NOW, policy.half_life_days)
    assert math.isclose(account.balance(NOW, policy), want, rel_tol=1e-12)


moment_types = st.sampled_from(
    ["support.resolved_first_contact", "promise.broken", "cancellation.requested", "renewal.signed"]
)


@given(
    kinds=st.lists(
        st.tuples(moment_types, st.integers(0, 60 * 24 * 9), st.floats(0, 5)),
        min_size=1,
        max_size=20,
    ),
    cut=st.integers(0, 20),
)
def test_batching_does_not_change_the_balance(
    kinds: list[tuple[str, int, float]], cut: int
) -> None:
    policy = make_policy(opening_balance=2)
    events = [
        make_stored_event(
            seq=i,
            type=t,
            effective_at=T0 + timedelta(minutes=minutes),
            magnitude=magnitude,
        )
        for i, (t, minutes, magnitude) in enumerate(kinds, start=1)
    ]
    whole = book(events, {}, policy, now=NOW)
    first = book(events[:cut], {}, policy, now=NOW)
    accounts: dict[str, Account] = dict(first.accounts)
    second = book(events[cut:], accounts, policy, now=NOW)
    split_account = second.accounts.get("c1") or first.accounts["c1"]
    got = split_account.balance(NOW, policy)
    want = whole.accounts["c1"].balance(NOW, policy)
    scale = sum(abs(e.amount) for e in whole.entries)
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 * scale)
    assert split_account.entries == whole.accounts["c1"].entries
    assert split_account.opened_at == whole.accounts["c1"].opened_at
    # (The status may differ: each batch is evaluated when applied, with hysteresis.)
