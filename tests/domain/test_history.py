"""Balance history (README `/history`): evenly spaced instants, and B(t) at each of them equal to
the README sum. The oracle here is written from the formula alone, without the service's
arithmetic."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.history import balances_at, history, instants

T0 = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_US = 365 * 86_400 * 1_000_000
Entry = tuple[float, datetime]

amounts = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
times = st.integers(min_value=-2 * YEAR_US, max_value=2 * YEAR_US).map(
    lambda us: T0 + timedelta(microseconds=us)
)
half_lives = st.none() | st.floats(min_value=1e-2, max_value=1e5)


def formula(entries: list[Entry], t: datetime, h: float | None) -> tuple[float, float]:
    """(B(t), Σ|terms|): B(t) = Σ over entries effective at or before t of
    amount · 2^(−(t − effective_at)/h), and the scale the rounding of that sum is relative to."""
    terms = [
        amount * (1.0 if h is None else 2.0 ** (-((t - at) / timedelta(days=1)) / h))
        for amount, at in entries
        if at <= t
    ]
    return math.fsum(terms), math.fsum(abs(term) for term in terms)


def assert_matches(
    got: list[float], entries: list[Entry], at: list[datetime], h: float | None
) -> None:
    assert len(got) == len(at)
    for value, t in zip(got, at, strict=True):
        want, scale = formula(entries, t, h)
        assert math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-9 * scale + 1e-300), (t, value)


def test_instants_are_evenly_spaced_and_include_both_ends() -> None:
    end = T0 + timedelta(days=10)
    found = instants(T0, end, 11)
    assert found == [T0 + timedelta(days=i) for i in range(11)]
    assert instants(T0, end, 2) == [T0, end]


def test_instants_spacing_differs_by_at_most_a_microsecond() -> None:
    end = T0 + timedelta(days=1, microseconds=7)
    found = instants(T0, end, 1000)
    assert (found[0], found[-1], len(found)) == (T0, end, 1000)
    steps = {later - earlier for earlier, later in itertools.pairwise(found)}
    assert max(steps) - min(steps) <= timedelta(microseconds=1)


def test_instants_of_an_empty_span_repeat_the_instant() -> None:
    assert instants(T0, T0, 3) == [T0, T0, T0]


@pytest.mark.parametrize(("points", "end"), [(1, T0), (0, T0), (5, T0 - timedelta(seconds=1))])
def test_instants_reject_too_few_points_and_a_reversed_span(points: int, end: datetime) -> None:
    with pytest.raises(ValueError, match=r"at least 2 points|cannot end before"):
        instants(T0, end, points)


def test_balances_at_a_small_ledger_by_hand() -> None:
    h = 90.0
    entries = [(10.0, T0), (-4.0, T0 + timedelta(days=90)), (6.0, T0 + timedelta(days=180))]
    at = [
        T0 - timedelta(days=1),
        T0,
        T0 + timedelta(days=90),
        T0 + timedelta(days=180),
        T0 + timedelta(days=270),
    ]
    got = balances_at(list(reversed(entries)), at, h)
    assert got == pytest.approx([0.0, 10.0, 5.0 - 4.0, 2.5 - 2.0 + 6.0, (2.5 - 2.0 + 6.0) / 2])


def test_an_entry_counts_from_its_own_instant_on() -> None:
    at = [T0 - timedelta(microseconds=1), T0, T0 + timedelta(microseconds=1)]
    assert balances_at([(3.0, T0)], at, None) == [0.0, 3.0, 3.0]


def test_instants_must_be_ascending() -> None:
    with pytest.raises(ValueError, match="ascending"):
        balances_at([(1.0, T0)], [T0, T0 - timedelta(days=1)], 90)


@settings(max_examples=300)
@given(
    entries=st.lists(st.tuples(amounts, times), max_size=60),
    bounds=st.tuples(times, times),
    points=st.integers(min_value=2, max_value=120),
    h=half_lives,
)
def test_every_point_equals_the_formula(
    entries: list[Entry], bounds: tuple[datetime, datetime], points: int, h: float | None
) -> None:
    start, end = sorted(bounds)
    at = instants(start, end, points)
    assert_matches(balances_at(entries, at, h), entries, at, h)


@settings(max_examples=100)
@given(
    entries=st.lists(st.tuples(amounts, times), min_size=1, max_size=40),
    h=half_lives,
)
def test_points_on_the_entries_themselves_equal_the_formula(
    entries: list[Entry], h: float | None
) -> None:
    """Instants that coincide with effective times: the `≤` of the formula, at every boundary."""
    at = sorted({when for _, when in entries})
    assert_matches(balances_at(entries, at, h), entries, at, h)


def test_history_defaults_to_opened_at_and_clamps_a_future_opening() -> None:
    entries = [(5.0, T0)]
    end = T0 + timedelta(days=4)
    series = history(entries, opened_at=T0, start=None, end=end, points=5, half_life_days=None)
    assert series == [(T0 + timedelta(days=i), 5.0) for i in range(5)]
    later = history(
        entries,
        opened_at=end + timedelta(days=1),
        start=None,
        end=end,
        points=2,
        half_life_days=None,
    )
    assert later == [(end, 5.0), (end, 5.0)]
