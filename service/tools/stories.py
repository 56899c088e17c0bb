"""The demo's customers: each follows one arc over the last eight months, steered by its own
running balance (the policy's weights and half-life) so the arc does what it says under the
active policy.

The arcs: thriving, steady, a crisis and a comeback, a bumpy start that time heals, a slow slide
into risk, a churn that ends in a cancellation, a new account. About one account in eight ends at
risk. A story never contradicts itself: onboarding comes first, a cancellation last and once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.policy import Policy, weigh

MONTHS = 8
# Arcs and their shares of the customers (exact quotas, so the mix does not hang on the seed).
ARCS = {
    "thriving": 0.29,
    "steady": 0.27,
    "comeback": 0.12,
    "healed": 0.08,
    "sliding": 0.09,
    "churning": 0.05,
    "new": 0.10,
}
SEGMENTS = {"smb": 0.45, "enterprise": 0.2, "strategic": 0.07, None: 0.28}

# A moment: (type, score range for the policy's banded types, else None).
Moment = tuple[str, tuple[int, int] | None]
GOOD: list[Moment] = [
    ("value.review_held", None),
    ("proactive.outreach", None),
    ("knowledge.shown", None),
    ("support.resolved_first_contact", None),
    ("contact.personalised", None),
    ("promise.kept", None),
    ("survey.nps", (9, 10)),
    ("survey.csat", (4, 5)),
    ("support.resolved", None),
]
MIXED: list[Moment] = [
    ("support.resolved", None),
    ("support.resolved_first_contact", None),
    ("support.long_wait", None),
    ("contact.generic", None),
    ("contact.personalised", None),
    ("survey.nps", (7, 8)),
    ("survey.csat", (3, 5)),
    ("promise.kept", None),
    ("knowledge.shown", None),
    ("billing.error", None),
    ("support.escalated", None),
]
QUIET: list[Moment] = [("survey.nps", (7, 8)), ("survey.csat", (3, 3))]
CRISIS: list[Moment] = [
    ("outage.affected", None),
    ("sla.breached", None),
    ("support.escalated", None),
    ("complaint.raised", None),
    ("promise.broken", None),
    ("support.reopened", None),
    ("survey.nps", (2, 5)),
]
REPAIR: list[Moment] = [
    ("complaint.resolved", None),
    ("proactive.fix", None),
    ("promise.kept", None),
    ("value.review_held", None),
    ("support.resolved_first_contact", None),
]
BUMPY: list[Moment] = [
    ("implementation.milestone_missed", None),
    ("support.escalated", None),
    ("knowledge.lacking", None),
    ("billing.error", None),
]
DRIP: list[Moment] = [
    ("support.long_wait", None),
    ("contact.generic", None),
    ("knowledge.lacking", None),
    ("support.reopened", None),
    ("survey.csat", (1, 2)),
    ("billing.error", None),
]
CHURN: list[Moment] = [
    ("promise.broken", None),
    ("complaint.raised", None),
    ("review.public_negative", None),
    ("plan.downgraded", None),
    ("sla.breached", None),
]
_SOURCES = {"support": "helpdesk", "complaint": "helpdesk", "survey": "surveys"}
_BILLING = ("billing", "plan", "renewal", "cancellation")
# Company-like customer ids: "harbor-logistics", "summit-dental".
_FIRST = (  # noqa: SIM905
    "acme alder amber apex aurora birch bluefin bright cedar cobalt coral crest delta ember fern "
    "granite harbor iron juniper lumen maple meadow nova oakridge orbit pine quartz river sable "
    "summit tidal vertex"
).split()
_SECOND = (  # noqa: SIM905
    "analytics bakery biotech cargo clinics consulting dental energy fitness foods freight games "
    "health hotels labs legal logistics media motors optics outdoors pharma print retail robotics "
    "security software studio systems telecom textiles travel"
).split()


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happens to a customer: an event, or (`event` None) a segment change."""

    at: datetime
    customer: str
    event: dict[str, Any] | None = None
    segment: str | None = None


@dataclass
class Demo:
    steps: list[Step]  # oldest first
    arcs: dict[str, str]  # customer -> arc

    @property
    def events(self) -> list[dict[str, Any]]:
        return [s.event for s in self.steps if s.event is not None]


@dataclass
class _Story:
    """One customer's steps, with the balance they add up to (to steer the arc by)."""

    customer: str
    policy: Policy
    rng: random.Random
    now: datetime
    segment: str | None = None
    steps: list[Step] = field(default_factory=list)
    posted: list[tuple[float, datetime]] = field(default_factory=list)

    def at(self, days_ago: float) -> datetime:
        return (self.now - timedelta(days=max(days_ago, 0.01))).replace(microsecond=0)

    def set_segment(self, days_ago: float, segment: str | None) -> None:
        self.segment = segment
        self.steps.append(Step(self.at(days_ago), self.customer, segment=segment))

    def _amount(self, moment: Moment, score: int | None) -> float:
        data = {self._field(moment[0]): score} if score is not None else None
        return weigh(
            self.policy, type_=moment[0], data=data, magnitude=1.0, segment=self.segment
        ).amount

    def _field(self, type_: str) -> str:
        found = self.policy.moments.get(type_)
        return (found.field if found else None) or "score"

    def add(self, days_ago: float, moment: Moment) -> float:
        """Add the moment; returns the balance just after it."""
        type_, scores = moment
        score = self.rng.randint(*scores) if scores else None
        at = self.at(days_ago)
        if self.steps and at <= self.steps[-1].at:  # kept in order, and never in the future
            later = self.steps[-1].at + timedelta(minutes=self.rng.randint(5, 90))
            at = max(min(later, self.now - timedelta(minutes=1)), self.steps[-1].at)
        family = type_.split(".")[0]
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{self.customer}-{len(self.steps):03d}",
            "source": "billing" if family in _BILLING else _SOURCES.get(family, "crm"),
            "type": type_,
            "subject": self.customer,
            "time": at.isoformat().replace("+00:00", "Z"),
        }
        if score is not None:
            event["data"] = {self._field(type_): score}
        self.steps.append(Step(at, self.customer, event=event))
        self.posted.append((self._amount(moment, score), at))
        return self.balance(at)

    def balance(self, at: datetime) -> float:
        h = self.policy.half_life_days
        return sum(
            a * (0.5 ** ((at - t).total_seconds() / 86_400 / h) if h else 1.0)
            for a, t in self.posted
            if t <= at
        )

    @property
    def low(self) -> float:
        return self.policy.thresholds_for(self.segment).at_risk_below

    @property
    def high(self) -> float:
        return self.policy.thresholds_for(self.segment).recover_at_or_above

    def routine(
        self, start: float, end: float, mood: list[Moment], gap: tuple[float, float], floor: float
    ) -> float:
        """Moments from `mood` every `gap` days from `start` to `end` days ago, never taking the
        balance below `floor` (the best of the mood is chosen instead). Returns where it ended."""
        t = start - self.rng.uniform(*gap)
        while t > end:
            moment = self.rng.choice(mood)
            at = self.at(t)
            if self.balance(at) + self._amount(moment, _low(moment)) < floor:
                moment = max(mood, key=lambda m: self._amount(m, _low(m)))
            self.add(t, moment)
            t -= self.rng.uniform(*gap)
        return t

    def until(
        self,
        t: float,
        mood: list[Moment],
        gap: tuple[float, float],
        done: Callable[[float], bool],
        floor: float = float("-inf"),
    ) -> float:
        """Moments from `mood` every `gap` days from `t` days ago until `done(balance)` (at most
        eight, and never past today), the mildest of the mood where another would take the
        balance below `floor`. Returns when the last one fell."""
        for _ in range(8):
            moment = self.rng.choice(mood)
            if self.balance(self.at(t)) + self._amount(moment, _low(moment)) < floor:
                moment = max(mood, key=lambda m: self._amount(m, _low(m)))
            if done(self.add(t, moment)) or t < 1:
                break
            t = max(t - self.rng.uniform(*gap), 0.5)
        return t


def _low(moment: Moment) -> int | None:
    return moment[1][0] if moment[1] else None


def _thriving(s: _Story, start: float) -> None:
    s.add(start, ("onboarding.completed", None))
    s.add(start - s.rng.uniform(7, 20), ("implementation.milestone_met", None))
    upgrade = s.rng.uniform(20, start - 25) if s.rng.random() < 0.35 else None
    renewal = start - s.rng.uniform(150, 170) if start > 175 else None
    referral = s.rng.uniform(3, 60) if s.rng.random() < 0.3 else None
    t = start - 20
    for ago, moment in sorted(
        [(a, m) for a, m in ((upgrade, "plan.upgraded"), (renewal, "renewal.signed")) if a]
        + ([(referral, "referral.made")] if referral else []),
        reverse=True,
    ):
        t = s.routine(t, ago, GOOD, (12, 30), s.high)
        s.add(ago, (moment, None))
        if moment == "plan.upgraded" and s.segment in (None, "smb") and ago > 10:
            follows = ago - s.rng.uniform(3, 8)  # the account team follows the upgrade
            s.set_segment(follows, "enterprise")
            t = min(t, follows - 1)
    s.routine(t, 1, GOOD, (12, 30), s.high)


def _steady(s: _Story, start: float) -> None:
    if s.rng.random() < 0.25:
        s.add(start, ("onboarding.stalled", None))
        start -= s.rng.uniform(10, 25)
    s.add(start, ("onboarding.completed", None))
    s.routine(start, 1, MIXED, (8, 25), s.high)


def _comeback(s: _Story, start: float) -> None:
    s.add(start, ("onboarding.completed", None))
    crisis = s.rng.uniform(80, min(170, start - 30))
    s.routine(start, crisis, MIXED, (8, 25), s.high)
    depth = s.low - s.rng.uniform(1, 6) * s.policy.multiplier_for(s.segment)
    t = s.until(crisis, CRISIS, (1, 5), lambda b: b < depth)
    repaired = s.high + s.rng.uniform(1, 4)
    t = s.until(t - s.rng.uniform(7, 25), REPAIR, (2, 6), lambda b: b >= repaired)
    s.routine(t, 1, GOOD, (12, 30), s.high)


def _healed(s: _Story, start: float) -> None:
    """A bad start, then quiet: decay alone brings the account back, months later."""
    s.add(start, ("onboarding.stalled", None))
    scale = s.policy.multiplier_for(s.segment)
    depth = s.low - s.rng.uniform(0.5, 2.5) * scale
    t = s.until(start - s.rng.uniform(2, 6), BUMPY, (2, 6), lambda b: b < depth, depth - 3 * scale)
    s.routine(t, 1, QUIET, (20, 40), s.low - 30)


def _sliding(s: _Story, start: float, *, crosses: bool) -> None:
    """Good months, then small disappointments every week or so: the balance slides slowly."""
    s.add(start, ("onboarding.completed", None))
    slide = s.rng.uniform(75, 120) if crosses else s.rng.uniform(35, 60)
    t = s.routine(start, slide, GOOD + MIXED, (10, 25), s.high)
    floor = s.low - 12 if crosses else s.low + 1
    t = s.routine(t, 1, DRIP, (5, 11), floor)
    if crosses and s.balance(s.at(0.5)) >= s.low:
        s.until(0.8, DRIP, (0.1, 0.2), lambda b: b < s.low)


def _churning(s: _Story, start: float) -> None:
    s.add(start, ("onboarding.completed", None))
    turn = s.rng.uniform(25, min(100, start - 20))
    t = s.routine(start, turn, MIXED, (8, 25), s.high)
    for _ in range(s.rng.randint(3, 5)):
        s.add(t, s.rng.choice(CHURN))
        t = max(t - s.rng.uniform(3, 8), 0.6)
    s.add(t - 0.1, ("cancellation.requested", None))  # and nothing after it


def _new(s: _Story, start: float) -> None:
    if s.rng.random() < 0.25:
        s.add(start, ("onboarding.stalled", None))
        s.routine(start, 0.5, MIXED, (4, 12), s.low + 4)
    else:
        s.add(start, ("onboarding.completed", None))
        s.routine(start, 0.5, GOOD, (4, 12), s.high)


_STARTS = {
    "thriving": (150, 240),
    "steady": (90, 240),
    "comeback": (190, 240),
    "healed": (185, 240),
    "sliding": (150, 240),
    "churning": (120, 240),
    "new": (3, 40),
}


def stories(
    policy: Policy, *, customers: int = 300, seed: int = 7, now: datetime | None = None
) -> Demo:
    """The demo's customers and what happened to them over the last eight months."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    counts = {arc: int(customers * share) for arc, share in ARCS.items()}
    counts["steady"] += customers - sum(counts.values())
    arcs = [arc for arc, n in counts.items() for _ in range(n)]
    rng.shuffle(arcs)
    names = [f"{a}-{b}" for a in _FIRST for b in _SECOND]
    chosen = rng.sample(names, min(customers, len(names)))
    chosen += [f"customer-{i:05d}" for i in range(len(chosen), customers)]
    steps: list[Step] = []
    arc_of: dict[str, str] = {}
    sliders = 0
    for customer, arc in zip(chosen, arcs, strict=True):
        story = _Story(customer, policy, random.Random(rng.random()), now)
        start = story.rng.uniform(*_STARTS[arc])
        segment = story.rng.choices(list(SEGMENTS), weights=list(SEGMENTS.values()))[0]
        if arc == "healed" and segment == "strategic":
            segment = "smb"  # its recovery level, 0, is one decay never reaches
        if segment is not None and segment in policy.segments:
            story.set_segment(start + 0.01, segment)
        if arc == "sliding":
            sliders += 1
            _sliding(story, start, crosses=sliders % 4 != 0)  # three in four slide into risk
        else:
            _ARCS[arc](story, start)
        steps += story.steps
        arc_of[customer] = arc
    steps.sort(key=lambda s: s.at)
    return Demo(steps, arc_of)


_ARCS: dict[str, Callable[[_Story, float], None]] = {
    "thriving": _thriving,
    "steady": _steady,
    "comeback": _comeback,
    "healed": _healed,
    "churning": _churning,
    "new": _new,
}
