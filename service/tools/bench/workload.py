"""The workload every mode of a run shares: N CloudEvents over C customers with a realistic mix.

Times are spread over the last 180 days and arrive mostly in time order, with some out of order
(backdated). About 15 % are banded moments (a score in `data`), 20 % carry a magnitude, 2 % have
a type the policy does not know (booked `unweighted`), and 2 % are exact re-sends of an earlier
event (`duplicate`). Each mode gets its own source and customers, so modes never meet.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.envelope import Event, validate
from service.domain.ledger import Account, StoredEvent, book
from service.domain.policy import Policy
from service.storage import accounts as accounts_store
from service.storage import events as events_store
from service.storage import ledger as ledger_store
from service.storage.policies import FIRST_GENERATION

DAYS = 180
DUPLICATES = 0.02
UNKNOWN = 0.02
BANDED = 0.15
OUT_OF_ORDER = 0.1


def corpus(
    policy: Policy, *, events: int, customers: int, source: str, seed: int = 11
) -> list[dict[str, Any]]:
    """`events` CloudEvents of `source`, for customers `<source>-<n>`, in sending order."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    good = [t for t, m in policy.moments.items() if m.weight is not None and m.weight > 0]
    bad = [t for t, m in policy.moments.items() if m.weight is not None and m.weight < 0]
    banded = [t for t, m in policy.moments.items() if m.bands]
    luck = [rng.betavariate(3, 1.5) for _ in range(max(1, customers))]
    made: list[dict[str, Any]] = []
    for n in range(events):
        c = rng.randrange(len(luck))
        data: dict[str, Any] = {}
        roll = rng.random()
        if roll < UNKNOWN:
            type_ = f"bench.unknown.{rng.randrange(5)}"
        elif banded and roll < UNKNOWN + BANDED:
            type_ = rng.choice(banded)
            moment = policy.moments[type_]
            assert moment.field is not None
            assert moment.bands is not None
            low, high = min(b.min for b in moment.bands), max(b.max for b in moment.bands)
            data[moment.field] = round(low + (high - low) * rng.random() ** (1 - luck[c] / 2))
        else:
            type_ = rng.choice(good if rng.random() < luck[c] else bad)
            if rng.random() < 0.2:
                data["magnitude"] = round(rng.uniform(0.5, 2.0), 2)
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"e{n}",
            "source": source,
            "type": type_,
            "subject": f"{source}-{c}",
            "time": now - timedelta(seconds=DAYS * 86_400 * (1 - (n + rng.random()) / events)),
        }
        if data:
            event["data"] = data
        made.append(event)
    for i in range(len(made)):
        if rng.random() < OUT_OF_ORDER:  # arrives late, stamped with its (earlier) time
            j = min(len(made) - 1, i + rng.randrange(1, 200))
            made[i]["time"], made[j]["time"] = made[j]["time"], made[i]["time"]
    for event in made:
        event["time"] = event["time"].isoformat().replace("+00:00", "Z")
    for i in range(1, len(made)):
        if rng.random() < DUPLICATES:
            made[i] = dict(made[rng.randrange(i)])
    return made


def distinct(events: Sequence[dict[str, Any]]) -> int:
    """How many of `events` the event store keeps (re-sends are not stored twice)."""
    return len({(e["source"], e["id"]) for e in events})


def decoded(events: Sequence[dict[str, Any]]) -> list[Event]:
    now = datetime.now(UTC)
    return [validate(e, received_at=now, max_future_skew=timedelta(minutes=5)) for e in events]


@dataclass(frozen=True, slots=True)
class Rows:
    """What the service writes for one batch, as rows for COPY."""

    events: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]
    accounts: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.events)


def rows(events: Sequence[Event], policy: Policy, batch: int) -> Iterator[Rows]:
    """The rows the service would write for `events` applied in batches of `batch`: each
    distinct event, its ledger entries, and each touched account once per batch."""
    accounts: dict[str, Account] = {}
    seen: set[tuple[str, str]] = set()
    seq = 0
    for start in range(0, len(events), batch):
        stored: list[StoredEvent] = []
        event_rows: list[tuple[Any, ...]] = []
        for e in events[start : start + batch]:
            if (e.source, e.id) in seen:
                continue
            seen.add((e.source, e.id))
            seq += 1
            stored.append(
                StoredEvent(
                    seq, e.source, e.id, e.type, e.customer_id, e.effective_at, e.data, e.magnitude
                )
            )
            event_rows.append((seq, *events_store.as_row(e), "kafka"))
        booking = book(stored, accounts, policy, now=datetime.now(UTC))
        accounts.update(booking.accounts)
        yield Rows(
            event_rows,
            [ledger_store.as_row(x, FIRST_GENERATION) for x in booking.entries],
            [accounts_store.as_row(a) for a in booking.accounts.values()],
        )
