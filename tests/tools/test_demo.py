"""`relbank dev --demo`: stories that hang together, seeded through the application service on a
simulated clock, so that every page has something worth seeing."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.application import Relbank
from service.domain.policy import Policy
from service.tools import demo
from service.tools.stories import MONTHS, Demo, stories
from tests.support.app import make_settings, runtime_for

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
ONCE = ("cancellation.requested", "renewal.signed", "referral.made", "plan.upgraded")
GOOD_NEWS = ("referral.made", "renewal.signed", "plan.upgraded", "review.public_positive")


def test_the_stories_are_deterministic_by_seed(default_policy: Policy) -> None:
    one = stories(default_policy, customers=60, seed=3, now=NOW)
    again = stories(default_policy, customers=60, seed=3, now=NOW)
    other = stories(default_policy, customers=60, seed=4, now=NOW)
    assert one.steps == again.steps
    assert one.steps != other.steps


def test_no_story_contradicts_itself(default_policy: Policy) -> None:
    made = stories(default_policy, seed=11, now=NOW)
    by_customer: dict[str, list[str]] = defaultdict(list)
    times = []
    for step in made.steps:
        if step.event is not None:
            by_customer[step.customer].append(step.event["type"])
            times.append(step.at)
    assert len({(e["source"], e["id"]) for e in made.events}) == len(made.events)
    assert max(times) <= NOW
    assert min(times) >= NOW - timedelta(days=31 * MONTHS)
    for customer, types in by_customer.items():
        assert types[0].startswith("onboarding."), (customer, types)
        assert types.count("onboarding.completed") <= 1, (customer, types)
        for once in ONCE:
            assert types.count(once) <= 1, (customer, types)
        if "cancellation.requested" in types:
            assert types[-1] == "cancellation.requested", (customer, types)
        if "plan.downgraded" in types:
            after = types[types.index("plan.downgraded") :]
            assert not set(after) & set(GOOD_NEWS), (customer, types)


async def _seeded(engine: AsyncEngine, database_url: str, policy: Policy, made: Demo) -> Relbank:
    app = runtime_for(make_settings(database_url), engine, policy).app
    await demo.play(app, made.steps)
    await app.sweep(NOW)
    return app


@pytest.mark.slow
async def test_the_seeded_mix_has_risk_recoveries_segments_and_history(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    made = stories(default_policy, now=NOW)
    app = await _seeded(clean, database_url, default_policy, made)

    accounts = {c: await app.account(c) for c in made.arcs}
    assert all(a is not None for a in accounts.values())
    at_risk = [c for c, a in accounts.items() if a is not None and a.status == "at_risk"]
    assert 0.10 <= len(at_risk) / len(accounts) <= 0.15, len(at_risk)
    # Who is at risk, and since when, follows from the stories: not everyone, not all at once.
    assert Counter(made.arcs[c] for c in at_risk)["churning"] >= 10
    assert Counter(made.arcs[c] for c in at_risk)["sliding"] >= 10
    since = sorted(a.status_since for a in accounts.values() if a and a.status == "at_risk")
    assert since[-1] - since[0] > timedelta(days=30)

    segments = Counter(a.segment for a in accounts.values() if a is not None)
    assert {"smb", "enterprise", "strategic", None} <= set(segments)
    changed_later = [
        s for s in made.steps if s.event is None and s.at > _first_step(made, s.customer)
    ]
    assert changed_later, "some accounts change segment mid-story (as a PUT would)"

    alerts = [a for _, a in await app.alerts_after(after=0, limit=10_000)]
    kinds = Counter(a.kind for a in alerts)
    assert kinds["at_risk"] >= 40, kinds
    assert kinds["recovered"] >= 20, kinds
    decay = [a for a in alerts if a.kind == "recovered" and a.cause_source is None]
    by_event = [a for a in alerts if a.kind == "recovered" and a.cause_source is not None]
    assert len(decay) >= 10, len(decay)
    assert len(by_event) >= 10, len(by_event)
    # Spread over the months, as if the service had been running all along.
    for found in (decay, [a for a in alerts if a.kind == "at_risk"]):
        months = {(a.at.year, a.at.month) for a in found}
        assert len(months) >= 4, sorted(months)
        assert all(a.at <= NOW for a in found)


def _first_step(made: Demo, customer: str) -> datetime:
    return min(s.at for s in made.steps if s.customer == customer)
