"""Metrics that need looking after (README): the database probe every process runs, and the
database-derived gauges only the worker refreshes (on a timer, so a scrape never waits for the
database and the api and consumer processes run none of these queries)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from service import metrics
from service.runtime import Runtime

log = logging.getLogger("relbank.metrics")
PROBE_TIMEOUT_SECONDS = 2.0


async def probe(rt: Runtime) -> bool:
    """Set relbank_database_up (and the pool gauges) from one ping; True when it answered."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await rt.app.ping()
        up = True
    except Exception:
        up = False
    metrics.DATABASE_UP.set(1 if up else 0)
    in_use, idle = rt.db.connections()
    metrics.DB_POOL_CONNECTIONS.labels(state="in_use").set(in_use)
    metrics.DB_POOL_CONNECTIONS.labels(state="idle").set(idle)
    return up


async def run_database_probe(rt: Runtime) -> None:
    """Every role: probe the database every RELBANK_METRICS_REFRESH_SECONDS."""
    while True:
        await probe(rt)
        await asyncio.sleep(rt.settings.metrics_refresh_seconds)


class GaugeRefresher:
    """The database-derived gauges. When a refresh fails they keep what they last showed (an
    at-risk account does not resolve because the database is away), the failure is counted, and
    relbank_gauges_refreshed_timestamp_seconds stays at the last success, so rules can tell how
    stale they are."""

    def __init__(self) -> None:
        self._customers: set[tuple[str, str]] = set()
        self._segments: set[str] = set()
        self._webhooks: set[str] = set()
        self._failing = False

    async def refresh(self, rt: Runtime) -> bool:
        s = rt.settings
        try:
            async with asyncio.timeout(max(10.0, s.metrics_refresh_seconds)):
                gauges = await rt.app.gauges(
                    s.at_risk_gauge_limit, with_topic=s.kafka_bootstrap is not None
                )
        except Exception as exc:
            metrics.GAUGE_REFRESH_FAILURES.inc()
            if not self._failing:
                log.warning("metrics: cannot refresh the database gauges: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("metrics: database gauges refreshed again")
        self._failing = False
        for status, n in gauges.counts.items():
            metrics.ACCOUNTS.labels(status=status).set(n)
        metrics.OUTBOX_PENDING.set(gauges.topic_backlog)
        metrics.AT_RISK_UNLISTED.set(gauges.unlisted)
        now = datetime.now(UTC)
        customers = set()
        for account in gauges.lowest:
            labels = (account.customer_id, account.segment or "")
            metrics.AT_RISK_BALANCE.labels(*labels).set(account.balance(now, rt.policy))
            customers.add(labels)
        for gone in self._customers - customers:
            metrics.AT_RISK_BALANCE.remove(*gone)
        self._customers = customers
        self._show_thresholds(rt)
        for name, backlog in gauges.webhook_backlog.items():
            metrics.WEBHOOK_BACKLOG.labels(webhook=name).set(backlog)
        for webhook in self._webhooks - gauges.webhook_backlog.keys():
            metrics.WEBHOOK_BACKLOG.remove(webhook)
        self._webhooks = set(gauges.webhook_backlog)
        metrics.GAUGES_REFRESHED.set_to_current_time()
        return True

    def _show_thresholds(self, rt: Runtime) -> None:
        """The levels the alert annotations quote; "" is the policy's own (no segment)."""
        segments = {"", *rt.policy.segments}
        for segment in segments:
            thresholds = rt.policy.thresholds_for(segment or None)
            for bound in ("at_risk_below", "recover_at_or_above"):
                metrics.POLICY_THRESHOLD.labels(segment, bound).set(getattr(thresholds, bound))
        for gone in self._segments - segments:
            for bound in ("at_risk_below", "recover_at_or_above"):
                metrics.POLICY_THRESHOLD.remove(gone, bound)
        self._segments = segments


async def run_gauges(rt: Runtime) -> None:
    """The worker: refresh the database-derived gauges every RELBANK_METRICS_REFRESH_SECONDS."""
    refresher = GaugeRefresher()
    while True:
        await refresher.refresh(rt)
        await asyncio.sleep(rt.settings.metrics_refresh_seconds)
