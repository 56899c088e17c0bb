"""The one corpus generator every suite draws its events from (HTTP, Kafka, pipeline, replay).

Valid CloudEvents over a set of customers, seeded: every moment type of the policy plus types it
does not know, band fields in, out of and beside their bands, magnitudes, extension attributes,
several sources, backfills up to two years old and times a little ahead of the clock. On request
it mixes in exact duplicates, conflicting reuses of a (source, id) and invalid envelopes of several
kinds. What the service must make of them is the oracle's business (`tests.support.oracle`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.oracle import read_policy

SOURCES = ("zendesk", "crm", "/billing/eu")
# Moment types the default policy does not know: stored, booked at 0, reported `unweighted`.
UNKNOWN_TYPES = ("crm.note.added", "custom.not_in_policy")
# Ages in days, scaled by a uniform draw: most events recent, some backfilled long ago.
AGE_SCALES = (0.01, 1, 30, 200, 700)
BAND_VALUES: tuple[Any, ...] = (0, 3, 5, 6, 7, 8, 9, 10, 11, -1, 2.5, "x", True)
MAGNITUDES = (0, 0.5, 1, 2, 3.25)


def customer_ids(n: int, prefix: str = "cust-") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def policy_types() -> list[str]:
    return list(read_policy()["moments"])


def rfc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_corpus(
    n: int,
    *,
    seed: int,
    customers: int | Sequence[str] = 50,
    prefix: str = "e",
    types: Sequence[str] | None = None,
    sources: Sequence[str] = SOURCES,
    at: datetime | None = None,
    max_age_days: float | None = None,
    future: float = 0.0,
    duplicates: float = 0.0,
    conflicts: float = 0.0,
    invalid: float = 0.0,
    shuffle: bool = False,
) -> list[dict[str, Any]]:
    """`n` distinct valid events (ids `{prefix}{i}`), each followed with the given probabilities
    by an exact duplicate, a conflicting reuse of its (source, id), or an invalid envelope (ids
    `{prefix}bad-{i}`). `future` is the share of events up to a minute ahead of `at` (within the
    allowed skew); `max_age_days` caps how far back the others go."""
    rng = random.Random(seed)
    now = at or datetime.now(UTC)
    names = customer_ids(customers) if isinstance(customers, int) else list(customers)
    kinds = list(types) if types is not None else [*policy_types(), *UNKNOWN_TYPES]
    out: list[dict[str, Any]] = []
    for i in range(n):
        if rng.random() < future:
            when = now + timedelta(seconds=rng.uniform(1, 60))
        else:
            age = rng.choice(AGE_SCALES) * rng.random()
            if max_age_days is not None:
                age = min(age, max_age_days)
            when = now - timedelta(days=age, seconds=1)
        type_ = rng.choice(kinds)
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{prefix}{i}",
            "source": rng.choice(sources),
            "type": type_,
            "subject": rng.choice(names),
            "time": rfc(when) if rng.random() < 0.5 else when.isoformat(),
        }
        if type_.startswith("survey."):
            if rng.random() < 0.9:
                event["data"] = {"score": rng.choice(BAND_VALUES), "comment": "ok"}
        elif rng.random() < 0.3:
            event["data"] = {"magnitude": rng.choice(MAGNITUDES), "note": "kept"}
        if rng.random() < 0.1:
            event["traceparent"] = f"00-{i + 1:032x}-{i + 1:016x}-01"  # an extension attribute
        out.append(event)
        roll = rng.random()
        if roll < duplicates:
            out.append(dict(event))
        elif roll < duplicates + conflicts:
            other = "sla.breached" if event["type"] != "sla.breached" else "promise.kept"
            out.append({**event, "type": other})
        elif roll < duplicates + conflicts + invalid:
            out.append(invalid_variant(event, rng=rng, id=f"{prefix}bad-{i}", now=now))
    if shuffle:
        rng.shuffle(out)
    return out


def invalid_variant(
    event: dict[str, Any], *, rng: random.Random, id: str, now: datetime
) -> dict[str, Any]:
    """The event broken in one of the ways §1 rejects."""
    bad = dict(event, id=id)
    kind = rng.randrange(7)
    if kind == 0:
        del bad["subject"]
    elif kind == 1:
        bad["time"] = "yesterday"
    elif kind == 2:
        bad["time"] = rfc(now + timedelta(hours=2))
    elif kind == 3:
        bad["data"] = {"magnitude": -1}
    elif kind == 4:
        bad["specversion"] = "0.3"
    elif kind == 5:
        bad["subject"] = "line\nbreak"
    else:
        bad["data"] = {"magnitude": 1001}
    return bad
