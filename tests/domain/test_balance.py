"""Balance arithmetic (README): order- and batch-independent decayed sums, crossings, ranking."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.balance import (
    EPOCH,
    Projection,
    balance_from_entries,
    decay,
    next_crossing,
    rank_key,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEN_YEARS_US = 10 * 365 * 86_400 * 1_000_000

Entry = tuple[float, datetime]

amounts = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
instants = st.integers(min_value=0, max_value=TEN_YEARS_US).map(
    lambda us: T0 + timedelta(microseconds=us)
)
half_lives = st.none() | st.floats(min_value=1e-3, max_value=1e5)
entry_lists = st.lists(st.tuples(amounts, instants), min_size=1, max_size=40)


def close(got: float, want: float, *, scale: float) -> bool:
    """Equal to relative 1e-9, with an absolute floor for sums that cancel to near 0."""
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 * scale + 1e-300)


def decayed_scale(entries: list[Entry], t: datetime, h: float | None) -> float:
    return math.fsum(abs(a) * decay(t - at, h) for a, at in entries if at <= t)


def split(entries: list[Entry], cuts: list[int]) -> list[list[Entry]]:
    bounds = [0, *sorted(c % (len(entries) + 1) for c in cuts), len(entries)]
    return [entries[lo:hi] for lo, hi in itertools.pairwise(bounds)]


# ---------------------------------------------------------------- decay and the reference pair


def test_decay_halves_every_half_life() -> None:
    assert decay(timedelta(0), 90) == 1.0
    assert decay(timedelta(days=90), 90) == 0.5
    assert decay(timedelta(days=180), 90) == 0.25
    assert decay(timedelta(days=45), 90) == pytest.approx(math.sqrt(0.5), rel=1e-15)
    assert decay(timedelta(days=10_000), None) == 1.0


def test_empty_projection_is_zero() -> None:
    assert Projection().balance_at(T0, 90) == 0.0
    assert Projection().post_all([], 90) == Projection()


def test_balance_before_ref_time_needs_the_ledger() -> None:
    projection = Projection().post(5, T0, 90)
    with pytest.raises(ValueError, match="ledger"):
        projection.balance_at(T0 - timedelta(seconds=1), 90)


def test_post_follows_the_two_rules_of_the_design() -> None:
    h = 30.0
    p = Projection().post(10, T0, h)
    assert p == Projection(10, T0)
    # Later entry: carry the balance forward, move the reference time.
    later = p.post(4, T0 + timedelta(days=30), h)
    assert later == Projection(10 * 0.5 + 4, T0 + timedelta(days=30))
    # Earlier entry: decay it to the reference time, keep the reference time.
    earlier = later.post(8, T0, h)
    assert earlier == Projection(9 + 8 * 0.5, T0 + timedelta(days=30))


def test_entries_after_t_do_not_count_in_the_formula() -> None:
    entries = [(10.0, T0), (5.0, T0 + timedelta(days=1))]
    assert balance_from_entries(entries, T0, 90) == 10.0
    assert balance_from_entries(entries, T0 - timedelta(days=1), 90) == 0.0


# ---------------------------------------------------------------- order and batch independence


@settings(max_examples=300)
@given(data=st.data(), entries=entry_lists, h=half_lives)
def test_any_order_and_batching_gives_the_formula(
    data: st.DataObject, entries: list[Entry], h: float | None
) -> None:
    shuffled = data.draw(st.permutations(entries), label="arrival order")
    cuts = data.draw(st.lists(st.integers(0, len(entries)), max_size=5), label="batch cuts")
    later = data.draw(st.integers(0, 400 * 86_400), label="seconds after the last entry")
    t = max(at for _, at in entries) + timedelta(seconds=later)
    want = balance_from_entries(entries, t, h)
    scale = decayed_scale(entries, t, h)

    batched = Projection()
    for batch in split(shuffled, cuts):
        batched = batched.post_all(batch, h)
    one_by_one = Projection()
    for amount, at in shuffled:
        one_by_one = one_by_one.post(amount, at, h)

    assert batched.ref_time == one_by_one.ref_time == max(at for _, at in entries)
    for projection in (batched, one_by_one):
        got = projection.balance_at(t, h)
        assert close(got, want, scale=scale), (got, want)


@given(entries=entry_lists, h=half_lives, steps=st.lists(st.integers(0, 10**7), max_size=5))
def test_balance_at_later_times_is_the_formula(
    entries: list[Entry], h: float | None, steps: list[int]
) -> None:
    projection = Projection().post_all(entries, h)
    t = projection.ref_time
    assert t is not None
    for step in steps:
        t += timedelta(seconds=step)
        want = balance_from_entries(entries, t, h)
        got = projection.balance_at(t, h)
        assert close(got, want, scale=decayed_scale(entries, t, h))


@given(entries=entry_lists)
def test_without_decay_the_balance_is_the_plain_sum(entries: list[Entry]) -> None:
    projection = Projection().post_all(entries, None)
    t = max(at for _, at in entries)
    assert close(
        projection.balance_at(t + timedelta(days=9999), None),
        math.fsum(a for a, _ in entries),
        scale=math.fsum(abs(a) for a, _ in entries),
    )


# ---------------------------------------------------------------- next crossing

crossing_half_lives = st.floats(min_value=0.1, max_value=3650)
magnitudes = st.floats(min_value=1e-3, max_value=1e6)


@given(
    balance=magnitudes,
    ratio=st.floats(min_value=1.0, max_value=1e6, exclude_min=True),
    sign=st.sampled_from([1.0, -1.0]),
    h=crossing_half_lives,
)
def test_next_crossing_is_where_the_balance_meets_the_threshold(
    balance: float, ratio: float, sign: float, h: float
) -> None:
    projection = Projection(sign * balance, T0)
    threshold = sign * balance / ratio
    crossing = next_crossing(projection, threshold, h)
    assert crossing is not None
    assert crossing >= T0
    assert math.isclose(projection.balance_at(crossing, h), threshold, rel_tol=1e-9)
    # Before t* the balance is on its original side of the threshold, after it on the other.
    second = timedelta(seconds=1)
    if crossing - second >= T0:
        assert sign * (projection.balance_at(crossing - second, h) - threshold) > 0
    assert sign * (projection.balance_at(crossing + second, h) - threshold) < 0


def test_next_crossing_example() -> None:
    # -20 decays to -5 in two half-lives.
    crossing = next_crossing(Projection(-20, T0), -5, 90)
    assert crossing == T0 + timedelta(days=180)


@given(
    balance=st.floats(-1e6, 1e6, allow_nan=False),
    threshold=st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != 0),
    h=crossing_half_lives,
)
def test_no_crossing_when_decay_moves_away_from_the_threshold(
    balance: float, threshold: float, h: float
) -> None:
    # Decay only shrinks |balance| toward 0: a threshold of the other sign, or beyond the
    # balance, is never reached.
    if balance / threshold > 1.0:
        return
    assert next_crossing(Projection(balance, T0), threshold, h) is None


@pytest.mark.parametrize(
    ("projection", "threshold", "h"),
    [
        pytest.param(Projection(-20, T0), 0.0, 90.0, id="threshold 0 is never reached"),
        pytest.param(Projection(20, T0), 0.0, 90.0, id="threshold 0 from above"),
        pytest.param(Projection(-20, T0), -5.0, None, id="no decay"),
        pytest.param(Projection(), -5.0, 90.0, id="no entries"),
        pytest.param(Projection(-20, T0), -20.0, 90.0, id="already at the threshold"),
        pytest.param(Projection(-3, T0), -5.0, 90.0, id="between threshold and 0"),
        pytest.param(Projection(3, T0), -5.0, 90.0, id="other sign"),
        pytest.param(Projection(0, T0), 5.0, 90.0, id="zero balance"),
    ],
)
def test_no_crossing(projection: Projection, threshold: float, h: float | None) -> None:
    assert next_crossing(projection, threshold, h) is None


@pytest.mark.parametrize(
    ("balance", "threshold", "h"),
    [(1e300, 1e-300, 1e5), (1e300, 1e-5, 1e5), (1e6, 1e-6, 1e9)],
)
def test_a_crossing_beyond_the_calendar_is_none(balance: float, threshold: float, h: float) -> None:
    assert next_crossing(Projection(balance, T0), threshold, h) is None


# ---------------------------------------------------------------- ranking

ref_balances = st.one_of(
    st.just(0.0),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_subnormal=False),
)
accounts = st.lists(
    st.one_of(
        st.just(Projection()),
        st.builds(Projection, ref_balances, instants),
    ),
    min_size=2,
    max_size=25,
)


@settings(max_examples=300)
@given(
    projections=accounts,
    h=st.none() | st.floats(min_value=0.1, max_value=1e4),
    gaps=st.tuples(st.integers(0, 10**8), st.integers(0, 10**9)),
)
def test_rank_key_orders_like_the_balance_now(
    projections: list[Projection], h: float | None, gaps: tuple[int, int]
) -> None:
    latest = max((p.ref_time for p in projections if p.ref_time), default=T0)
    keys = [rank_key(p, h) for p in projections]
    for gap in gaps:
        now = latest + timedelta(seconds=gap)
        balances = [p.balance_at(now, h) for p in projections]
        for i, (bi, ki) in enumerate(zip(balances, keys, strict=True)):
            for bj, kj in zip(balances[i + 1 :], keys[i + 1 :], strict=True):
                margin = 1e-9 * max(abs(bi), abs(bj))
                if bi < bj - margin:
                    assert ki < kj, (bi, bj, ki, kj)
                elif bj < bi - margin:
                    assert kj < ki, (bi, bj, ki, kj)


def test_rank_key_examples() -> None:
    now = T0 + timedelta(days=400)
    a = Projection(-40, T0)  # -40 at T0 is -10 two half-lives later
    b = Projection(-20, T0 + timedelta(days=90))  # also -10 at T0 + 180 d
    c = Projection(-11, T0 + timedelta(days=180))
    zero = Projection()
    positive = Projection(1, T0)
    ranked = sorted([positive, zero, c, b, a], key=lambda p: rank_key(p, 90))
    assert ranked[0] is c
    assert {id(ranked[1]), id(ranked[2])} == {id(a), id(b)}
    assert ranked[3:] == [zero, positive]
    assert rank_key(a, 90) == pytest.approx(rank_key(b, 90), rel=1e-12)
    assert rank_key(zero, 90) == rank_key(Projection(0.0, T0), 90) == (0, 0.0)
    assert [p.balance_at(now, 90) for p in ranked] == sorted(p.balance_at(now, 90) for p in ranked)


def test_rank_key_without_decay_is_the_balance() -> None:
    assert rank_key(Projection(-7.5, T0), None) == (-1, -7.5)
    assert rank_key(Projection(3.0, T0), None) == (1, 3.0)


def test_epoch_is_utc() -> None:
    assert datetime(1970, 1, 1, tzinfo=UTC) == EPOCH
