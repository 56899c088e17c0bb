"""Background work that is not request-driven: the time-driven alert sweeper."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics
from service.api.context import Context
from service.domain.ledger import Account, Alert, settle
from service.domain.policy import Policy
from service.storage import writes
from service.storage.db import in_transaction

log = logging.getLogger("relbank.sweeper")
SWEEP_BATCH = 500


async def sweep_once(
    conn: AsyncConnection, policy: Policy, *, alerts_topic: str, now: datetime | None = None
) -> list[Alert]:
    """Apply the transitions decay alone has brought due (cause "decay")."""
    now = now or datetime.now(UTC)
    due = await writes.due_customers(conn, now, SWEEP_BATCH)
    if not due:
        return []
    await writes.lock_customers(conn, due)
    settled: list[Account] = []
    raised: list[Alert] = []
    for account in (await writes.load_accounts(conn, due)).values():
        # Re-checked under the lock: another sweeper or a new event may have settled it.
        if account.next_transition_at is None or account.next_transition_at > now:
            continue
        account, alert = settle(account, policy, now=now, cause=None)
        settled.append(account)
        if alert:
            raised.append(alert)
    await writes.save_accounts(conn, settled)
    await writes.insert_alerts(conn, raised, alerts_topic=alerts_topic)
    return raised


async def sweeper(ctx: Context) -> None:
    interval = ctx.settings.sweep_interval_seconds
    while True:
        try:

            async def work(conn: AsyncConnection) -> list[Alert]:
                return await sweep_once(conn, ctx.policy, alerts_topic=ctx.settings.alerts_topic)

            raised = await in_transaction(ctx.engine, work)
            metrics.count_alerts([a.kind for a in raised])
            if len(raised) >= SWEEP_BATCH:
                continue
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed; retrying in %ss", interval)
        await asyncio.sleep(interval)
