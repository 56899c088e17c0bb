"""`relbank replay`: rebuild every ledger entry, projection and status from the event store."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.envelope import RESERVED_SOURCE
from service.domain.ledger import Account, book, settle
from service.domain.policy import Policy
from service.storage import policies, writes

PAGE = 5000


@dataclass(frozen=True, slots=True)
class ReplayReport:
    events: int
    entries: int
    accounts: int
    balances_changed: int
    alerts: dict[str, int]
    policy_version: str

    def lines(self) -> list[str]:
        return [
            f"replayed {self.events} events into {self.entries} ledger entries "
            f"under policy {self.policy_version}",
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
    alerts_topic: str,
    progress: Callable[[int], object] | None = None,
) -> ReplayReport:
    """Runs in the caller's transaction; writers wait until it commits."""
    await writes.lock_for_replay(conn)
    before = await writes.all_accounts(conn)
    await writes.clear_ledger(conn)
    now = datetime.now(UTC)
    rebuilt: dict[str, Account] = {}
    events = entries = 0
    after_seq = 0
    while page := await writes.events_after(conn, after_seq, PAGE):
        booking = book(page, rebuilt, policy, now=now, evaluate=False)
        await writes.insert_entries(conn, booking)
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
            account = replace(account, status=old.status, status_since=old.status_since)
        account, alert = settle(account, policy, now=now, cause=cause)
        settled.append(account)
        if alert:
            alerts.append(alert)
    for start in range(0, len(settled), PAGE):
        await writes.save_accounts(conn, settled[start : start + PAGE])
    await writes.insert_alerts(conn, alerts, alerts_topic=alerts_topic)
    await policies.set_projection_policy(conn, policy)
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
    )
