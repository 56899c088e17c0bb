"""`relbank replay`: rebuild every ledger entry, projection and status from the event store.

The rebuilt ledger is written as a new generation (INSERT only: the ledger stays append-only),
the accounts are rewritten, and the active generation and policy flip in the same transaction:
readers see the old ledger until it commits, then the new one, never a half-built one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import RESERVED_SOURCE
from service.domain.ledger import Account, book, settle
from service.domain.policy import Policy
from service.pipeline import record_alerts
from service.storage import accounts, ledger, locks, policies
from service.storage import events as event_store

PAGE = 5000


@dataclass(frozen=True, slots=True)
class ReplayReport:
    events: int
    entries: int
    accounts: int
    balances_changed: int
    alerts: dict[str, int]
    policy_version: str
    generation: int

    def lines(self) -> list[str]:
        return [
            f"replayed {self.events} events into {self.entries} ledger entries "
            f"under policy {self.policy_version} (ledger generation {self.generation}, "
            "now active)",
            f"accounts: {self.accounts}, balances changed: {self.balances_changed}",
            f"status changes (new alerts): at_risk {self.alerts.get('at_risk', 0)}, "
            f"recovered {self.alerts.get('recovered', 0)}",
        ]


def _moved(before: Account | None, after: Account) -> bool:
    """Whether the rebuilt reference pair differs from the stored one (beyond rounding)."""
    if before is None:
        return True
    old, new = before.projection, after.projection
    return old.ref_time != new.ref_time or not math.isclose(
        old.ref_balance, new.ref_balance, rel_tol=1e-9, abs_tol=1e-9
    )


async def replay(
    conn: AsyncConnection,
    policy: Policy,
    *,
    progress: Callable[[int], object] | None = None,
) -> ReplayReport:
    """Runs in the caller's transaction; writers wait until it commits."""
    await locks.own_projection(conn)
    before = await accounts.load_all(conn)
    generation = await policies.next_generation(conn)
    now = datetime.now(UTC)
    rebuilt: dict[str, Account] = {}
    events = entries = 0
    after_seq = 0
    while page := await event_store.events_after(conn, after_seq, PAGE):
        booking = book(page, rebuilt, policy, now=now, evaluate=False)
        await ledger.insert(conn, booking, generation=generation)
        rebuilt.update(booking.accounts)
        events += len(page)
        entries += len(booking.entries)
        after_seq = page[-1].seq
        if progress:
            progress(len(page))
    settled: list[Account] = []
    alerts = []
    cause = (RESERVED_SOURCE, f"replay:{policy.version}")
    for customer_id, account in rebuilt.items():
        old = before.get(customer_id)
        if old is not None:
            # Alerts already raised are facts: carry the status forward and evaluate it once.
            account = account._replace(status=old.status, status_since=old.status_since)
        account, alert = settle(account, policy, now=now, cause=cause)
        settled.append(account)
        if alert:
            alerts.append(alert)
    for start in range(0, len(settled), PAGE):
        await accounts.save(conn, settled[start : start + PAGE])
    await record_alerts(conn, alerts)
    await policies.set_projection_policy(conn, policy, generation=generation)
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    return ReplayReport(
        events=events,
        entries=entries,
        accounts=len(settled),
        balances_changed=sum(_moved(before.get(a.customer_id), a) for a in settled),
        alerts=counts,
        policy_version=policy.version,
        generation=generation,
    )
