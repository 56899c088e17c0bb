"""The contract's arithmetic, written from DESIGN §1–4 alone: the one independent oracle every
suite checks the service against.

It reads the policy YAML into plain data and imports nothing of the service, so a wrong formula
in the service cannot hide behind the same wrong formula here. `Book` plays the whole service as
the contract describes it: events offered in arrival order give outcomes (§1), ledger entries
weighed under the segment in force (§2), balances by the decay formula (§3) and statuses and
alerts by hysteresis (§4).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

POLICY_FILE = Path(__file__).resolve().parents[2] / "service" / "default_policy.yaml"
HALF_LIFE_DAYS = 90.0
MAX_FUTURE_SKEW = timedelta(minutes=5)
SEGMENT_CHANGED = "relbank.customer.segment_changed"

Entry = tuple[float, datetime]
Outcome = Literal["applied", "unweighted", "duplicate", "conflict", "rejected"]


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


# ---- times and the balance formula (§3) -------------------------------------------------------


def is_rfc3339(value: str) -> bool:
    """An RFC 3339 date-time with its offset (what §1 asks of `time`, §5 of every time)."""
    return bool(_RFC3339.match(value))


def parse_time(value: str) -> datetime:
    """An RFC 3339 time with its offset, as an aware datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    assert parsed.tzinfo is not None, f"{value!r} has no offset"
    return parsed


def decay(delta: timedelta, half_life_days: float | None) -> float:
    """d(Δ) = 2^(−Δ/h); 1 when h is null."""
    if half_life_days is None:
        return 1.0
    return float(2.0 ** (-(delta / timedelta(days=1)) / half_life_days))


def balance_at(
    entries: Iterable[Entry], at: datetime, *, half_life_days: float | None = HALF_LIFE_DAYS
) -> float:
    """B(t) = Σ over entries effective at or before t of amount · d(t − effective_at)."""
    return math.fsum(
        amount * decay(at - when, half_life_days) for amount, when in entries if when <= at
    )


def close(actual: float, expected: float, *, rel: float = 1e-6) -> bool:
    """Equal to the contract's tolerance (relative 1e-6 here; an absolute floor for zero)."""
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-9)


def hysteresis(status: str, balance: float, below: float, recover: float) -> str:
    """§4: ok → at_risk below the first level; at_risk → ok at or above the second."""
    if status == "ok" and balance < below:
        return "at_risk"
    if status == "at_risk" and balance >= recover:
        return "ok"
    return status


# ---- the envelope (§1) ------------------------------------------------------------------------


def _clean_identifier(value: Any, longest: int) -> bool:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        return False
    for char in value:
        code = ord(char)
        if unicodedata.category(char) in ("Cc", "Cf"):
            return False
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return False
    return True


def valid(
    event: Any, *, received_at: datetime, max_future_skew: timedelta = MAX_FUTURE_SKEW
) -> bool:
    """Whether an envelope (already parsed JSON) keeps the rules of §1 (size aside)."""
    if not isinstance(event, dict) or event.get("specversion") != "1.0":
        return False
    lengths = {"id": 256, "source": 256, "type": 128, "subject": 128}
    if not all(_clean_identifier(event.get(name), n) for name, n in lengths.items()):
        return False
    when = event.get("time")
    if not isinstance(when, str) or not is_rfc3339(when):
        return False
    try:
        instant = parse_time(when)
    except ValueError:
        return False
    if instant > received_at + max_future_skew:
        return False
    data = event.get("data")
    if data is None:
        return True
    if not isinstance(data, dict):
        return False
    magnitude = data.get("magnitude", 1)
    return (
        isinstance(magnitude, int | float)
        and not isinstance(magnitude, bool)
        and math.isfinite(magnitude)
        and 0 <= magnitude <= 1000
    )


def effective_at(event: Mapping[str, Any], received_at: datetime) -> datetime:
    """§1: a moment slightly in the future is booked when it was received."""
    return min(parse_time(event["time"]), received_at)


def meaning(event: Mapping[str, Any]) -> dict[str, Any]:
    """What two envelopes must share to be the same event: `time` as an instant; numbers by
    value and members in any order come free with Python's equality."""
    return {**event, "time": parse_time(event["time"])}


# ---- the policy (§2) --------------------------------------------------------------------------


def read_policy(path: Path = POLICY_FILE) -> dict[str, Any]:
    """A policy file as plain data."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


class Contract:
    """One policy document read as §2 says."""

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        self.document: Mapping[str, Any] = document if document is not None else read_policy()
        h = self.document.get("half_life_days")
        self.half_life_days: float | None = None if h is None else float(h)
        self.opening_balance = float(self.document.get("opening_balance") or 0)
        self.version = str(self.document["version"])

    @property
    def moments(self) -> Mapping[str, Any]:
        moments: Mapping[str, Any] = self.document["moments"]
        return moments

    def weight(self, type_: str, data: Any) -> float | None:
        """The moment's weight or its band's; None when the event is unweighted."""
        moment = self.moments.get(type_)
        if moment is None:
            return None
        if moment.get("weight") is not None:
            return float(moment["weight"])
        value = (data or {}).get(moment["field"])
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value):
            return None
        for band in moment["bands"]:
            if band["min"] <= value <= band["max"]:
                return float(band["weight"])
        return None

    def segment(self, name: str | None) -> Mapping[str, Any]:
        if name is None:
            return {}
        found: Mapping[str, Any] = (self.document.get("segments") or {}).get(name) or {}
        return found

    def amount(self, event: Mapping[str, Any], segment: str | None = None) -> float:
        """weight × magnitude × the segment's weight_multiplier; 0 when unweighted."""
        data = event.get("data")
        weight = self.weight(event["type"], data)
        if weight is None:
            return 0.0
        magnitude = float((data or {}).get("magnitude", 1))
        multiplier = float(self.segment(segment).get("weight_multiplier", 1))
        return weight * magnitude * multiplier

    def levels(self, segment: str | None = None) -> tuple[float, float]:
        """(at_risk_below, recover_at_or_above) of the segment, or the policy's."""
        t = self.segment(segment).get("thresholds") or self.document["thresholds"]
        return float(t["at_risk_below"]), float(t["recover_at_or_above"])

    def balance(self, entries: Iterable[Entry], at: datetime) -> float:
        return balance_at(entries, at, half_life_days=self.half_life_days)


# ---- the whole service (§1–4) -----------------------------------------------------------------


@dataclass
class Account:
    segment: str | None = None
    entries: list[Entry] = field(default_factory=list)
    status: str = "ok"
    alerts: list[str] = field(default_factory=list)  # kinds, oldest first
    events: list[tuple[str, str]] = field(default_factory=list)  # (source, id) booked


class Book:
    """The expected state of the service after the events offered to it, in arrival order."""

    def __init__(self, contract: Contract | None = None) -> None:
        self.contract = contract or Contract()
        self.accepted: dict[tuple[str, str], dict[str, Any]] = {}
        self.accounts: dict[str, Account] = {}

    def offer(self, event: Any, *, received_at: datetime) -> Outcome:
        """One event's outcome; a new one is booked (statuses wait for `evaluate`)."""
        if not valid(event, received_at=received_at):
            return "rejected"
        key = (event["source"], event["id"])
        seen = self.accepted.get(key)
        if seen is not None:
            return "duplicate" if meaning(seen) == meaning(event) else "conflict"
        self.accepted[key] = event
        account = self.accounts.get(event["subject"])
        when = effective_at(event, received_at)
        if account is None:
            account = self.accounts[event["subject"]] = Account()
            if self.contract.opening_balance:
                account.entries.append((self.contract.opening_balance, when))
        account.entries.append((self.contract.amount(event, account.segment), when))
        account.events.append(key)
        if self.contract.weight(event["type"], event.get("data")) is None:
            return "unweighted"
        return "applied"

    def ingest(self, batch: Iterable[Any], *, received_at: datetime) -> list[Outcome]:
        """A batch applied at once: outcomes in order, then each touched status evaluated."""
        outcomes = []
        touched: set[str] = set()
        for event in batch:
            outcome = self.offer(event, received_at=received_at)
            outcomes.append(outcome)
            if outcome in ("applied", "unweighted"):
                touched.add(event["subject"])
        for customer_id in touched:
            self.evaluate(customer_id, received_at)
        return outcomes

    def set_segment(self, customer_id: str, segment: str | None, *, at: datetime) -> None:
        self.accounts.setdefault(customer_id, Account()).segment = segment
        self.evaluate(customer_id, at)

    def evaluate(self, customer_id: str, at: datetime) -> None:
        account = self.accounts[customer_id]
        below, recover = self.contract.levels(account.segment)
        status = hysteresis(account.status, self.balance(customer_id, at), below, recover)
        if status != account.status:
            account.alerts.append("at_risk" if status == "at_risk" else "recovered")
            account.status = status

    def balance(self, customer_id: str, at: datetime) -> float:
        return self.contract.balance(self.accounts[customer_id].entries, at)

    def balances(self, at: datetime) -> dict[str, float]:
        """B(at) of every account that has entries."""
        return {c: self.balance(c, at) for c, a in self.accounts.items() if a.entries}


def book_all(
    events: Iterable[Any], *, contract: Contract | None = None, received_at: datetime | None = None
) -> Book:
    """Every event offered once, in order (a Kafka topic read through, or a merged HTTP run)."""
    book = Book(contract)
    at = received_at or datetime.now(UTC)
    for event in events:
        book.offer(event, received_at=at)
    return book
