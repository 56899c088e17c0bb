"""Each booked event reports the balance right after it, not the balance after the whole batch."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.balance import balance_from_entries
from service.domain.ledger import SEGMENT_CHANGED_TYPE, book
from tests.domain.factories import T0, make_account, make_stored_event
from tests.support.policy import make_policy

NOW = T0 + timedelta(days=10)


def test_each_event_of_a_batch_has_the_balance_after_it() -> None:
    policy = make_policy(half_life_days=None)
    events = [
        make_stored_event(seq=1, type="support.resolved_first_contact"),  # +6
        make_stored_event(seq=2, type="promise.broken"),  # -12
        make_stored_event(seq=3, customer_id="c2", type="renewal.signed"),  # +15 elsewhere
        make_stored_event(
            seq=4, source="relbank", type=SEGMENT_CHANGED_TYPE, data={"segment": "enterprise"}
        ),
        make_stored_event(seq=5, type="support.resolved_first_contact"),  # +6 x 1.5
    ]
    booking = book(events, {"c1": make_account(balance=100)}, policy, now=NOW)
    assert {seq: r.balance(NOW, policy) for seq, r in booking.results.items()} == {
        1: 106,
        2: 94,
        3: 15,
        4: 94,  # a segment change moves no balance
        5: 103,
    }
    assert booking.accounts["c1"].balance(NOW, policy) == 103


_types = st.sampled_from(
    ["support.resolved_first_contact", "promise.broken", "renewal.signed", "crm.unknown"]
)


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["c1", "c2", "c3"]), _types, st.floats(0, 9)),
        min_size=1,
        max_size=12,
    ),
    existing=st.dictionaries(
        st.sampled_from(["c1", "c2"]), st.tuples(st.floats(-50, 50), st.floats(0, 9))
    ),
    opening=st.sampled_from([0.0, 10.0]),
    seed=st.integers(0, 2**32),
)
def test_each_balance_is_the_formula_over_what_arrived_up_to_it(
    events: list[tuple[str, str, float]],
    existing: dict[str, tuple[float, float]],
    opening: float,
    seed: int,
) -> None:
    policy = make_policy(half_life_days=30, opening_balance=opening)
    stored = [
        make_stored_event(seq=seq, customer_id=c, type=t, effective_at=T0 + timedelta(days=d))
        for seq, (c, t, d) in enumerate(events, start=1)
    ]
    random.Random(seed).shuffle(stored)  # arrival order is the seq, not the list order
    accounts = {
        c: make_account(customer_id=c, balance=b, at=T0 + timedelta(days=d))
        for c, (b, d) in existing.items()
    }

    booking = book(stored, accounts, policy, now=NOW)

    for event in stored:
        c = event.customer_id
        prior = [(existing[c][0], T0 + timedelta(days=existing[c][1]))] if c in existing else []
        so_far = [
            (e.amount, e.effective_at)
            for e in booking.entries
            if e.customer_id == c and (e.event_seq is None or e.event_seq <= event.seq)
        ]
        expected = balance_from_entries(prior + so_far, NOW, policy.half_life_days)
        actual = booking.results[event.seq].balance(NOW, policy)
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    for c, account in booking.accounts.items():
        last = max(e.seq for e in stored if e.customer_id == c)
        assert booking.results[last].balance(NOW, policy) == account.balance(NOW, policy)
