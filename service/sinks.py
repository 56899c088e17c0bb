"""The use cases of alert delivery (README), for the application service: webhooks and
their registration, and the steps of the relays that carry alerts to the alerts topic and to
each webhook.

Every sink reads the alerts table in id order from where it stands (`storage.sinks`), in a
transaction that holds its row: one relay at a time per sink, a slow sink holds back no other,
and delivery survives restarts. Each step delivers and then records, so a crash in between
delivers again: at least once, in alert order (hence in order per customer).
"""

from __future__ import annotations

import base64
import enum
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.ledger import Alert
from service.retry import backoff
from service.storage import alerts, sinks, webhooks
from service.storage.db import Database
from service.storage.webhooks import Webhook, WebhookState

# Produce alerts to the alerts topic; returns once every one is acknowledged.
Publish = Callable[[list[tuple[int, Alert]]], Awaitable[None]]
# POST one alert to a webhook; raises `DeliveryFailed` unless the receiver took it.
Send = Callable[[Webhook, int, Alert], Awaitable[None]]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Alerts a webhook step looks at to find the next one of the webhook's kinds.
_SCAN = 100
# How much longer than a delivery's timeout its lease lasts (time to record the outcome).
LEASE_MARGIN_SECONDS = 5.0


class DeliveryFailed(Exception):
    """The receiver did not take the alert; the message says how (status, timeout, error)."""


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and the base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class Retry:
    """How a webhook's deliveries are retried: capped exponential backoff; an alert is given up
    once the sink has failed for `give_up_after_seconds` and the alert is at least that old."""

    base_seconds: float
    cap_seconds: float
    give_up_after_seconds: float
    timeout_seconds: float  # of one delivery


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    FAILED = "failed"
    GAVE_UP = "gave_up"  # alerts past the give-up age were dropped; go on at once
    SKIPPED = "skipped"  # alerts of other kinds were passed over; go on at once
    WAITING = "waiting"  # the next attempt is not due yet
    IDLE = "idle"  # nothing to deliver
    BUSY = "busy"  # another relay holds the sink
    GONE = "gone"  # the webhook was removed


@dataclass(frozen=True, slots=True)
class Step:
    outcome: Outcome
    next_attempt_at: datetime | None = None
    count: int = 0  # alerts given up on, or passed over
    error: str | None = None  # why the delivery failed


@dataclass(frozen=True, slots=True)
class Registered:
    state: WebhookState
    created: bool
    secret: str | None  # the generated secret, shown once


@dataclass(frozen=True, slots=True)
class _Attempt:
    hook: Webhook
    alert_id: int
    alert: Alert
    attempts: int
    fence: sinks.Fence


def _expired(
    wanted: list[alerts.StoredAlert], failing_since: datetime | None, now: datetime, retry: Retry
) -> int:
    """How many of the first `wanted` alerts are past giving up: the sink has been failing for
    the give-up time, and they are that old too."""
    if failing_since is None:
        return 0
    deadline = now - timedelta(seconds=retry.give_up_after_seconds)
    expired = 0
    while expired < len(wanted) and max(wanted[expired].recorded_at, failing_since) <= deadline:
        expired += 1
    return expired


class Sinks:
    """Delivery use cases over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- webhooks ----------------------------------------------------------------------------

    async def put_webhook(
        self, name: str, *, url: str, secret: str | None, kinds: Sequence[str]
    ) -> Registered:
        """Create or change a webhook. With no `secret`, a new webhook gets a generated one
        (returned) and a changed one keeps its own."""
        generated = new_secret()

        async def work(conn: AsyncConnection) -> Registered:
            created = await webhooks.put(
                conn, name, url=url, secret=secret, new_secret=generated, kinds=kinds
            )
            [state] = await webhooks.states(conn, [name])
            shown = generated if created and secret is None else None
            return Registered(state, created, shown)

        return await self.db.transaction(work)

    async def delete_webhook(self, name: str) -> bool:
        async def work(conn: AsyncConnection) -> bool:
            return await webhooks.delete(conn, name)

        return await self.db.transaction(work)

    async def webhooks(self) -> list[WebhookState]:
        async with self.db.reading() as conn:
            return await webhooks.states(conn)

    async def webhook_names(self) -> list[str]:
        async with self.db.reading() as conn:
            return await webhooks.names(conn)

    async def deliver_webhook(self, name: str, send: Send, retry: Retry, *, owner: str) -> Step:
        """One step of a webhook's relay (run by `owner`): give up on what is too old, else
        POST the next alert of its kinds once, when due, and record how that went.

        The POST is made under a lease on the sink and outside any transaction (no connection
        is held while a receiver takes its time); the lease outlasts the timeout of `send`."""
        sink = sinks.webhook_sink(name)
        lease_seconds = retry.timeout_seconds + LEASE_MARGIN_SECONDS

        async def prepare(conn: AsyncConnection) -> Step | _Attempt:
            cursor = await sinks.claim(conn, sink)
            hook = await webhooks.one(conn, name) if cursor else None
            if cursor is None or hook is None:
                busy = await sinks.exists(conn, sink)
                return Step(Outcome.BUSY if busy else Outcome.GONE)
            now = datetime.now(UTC)
            if cursor.leased_to_another(owner, now):
                return Step(Outcome.BUSY)
            if cursor.next_attempt_at is not None and cursor.next_attempt_at > now:
                return Step(Outcome.WAITING, cursor.next_attempt_at)
            scanned = await alerts.for_sink(conn, after=cursor.last_alert_id, limit=_SCAN)
            wanted = [a for a in scanned if a.alert.kind in hook.kinds]
            if not wanted:
                if not scanned:
                    return Step(Outcome.IDLE)
                await sinks.skipped(conn, sink, through=scanned[-1].alert_id)
                return Step(Outcome.SKIPPED, count=len(scanned))
            expired = _expired(wanted, cursor.failing_since, now, retry)
            if expired:
                through = wanted[expired - 1].alert_id
                await sinks.gave_up(conn, sink, through=through, count=expired, at=now)
                return Step(Outcome.GAVE_UP, count=expired)
            until = now + timedelta(seconds=lease_seconds)
            await sinks.lease(conn, sink, owner=owner, until=until)
            fence = sinks.Fence(owner, cursor.last_alert_id)
            return _Attempt(hook, wanted[0].alert_id, wanted[0].alert, cursor.attempts, fence)

        prepared = await self.db.transaction(prepare)
        if isinstance(prepared, Step):
            return prepared
        attempt = prepared
        try:
            await send(attempt.hook, attempt.alert_id, attempt.alert)
        except DeliveryFailed as exc:
            error = str(exc)[:500]
            done = datetime.now(UTC)
            delay = backoff(attempt.attempts + 1, base=retry.base_seconds, cap=retry.cap_seconds)
            retry_at = done + timedelta(seconds=delay)

            async def record_failure(conn: AsyncConnection) -> bool:
                return await sinks.failed(
                    conn, sink, error=error, at=done, retry_at=retry_at, fence=attempt.fence
                )

            await self.db.transaction(record_failure)
            return Step(Outcome.FAILED, retry_at, error=error)

        async def record_delivery(conn: AsyncConnection) -> bool:
            return await sinks.delivered(
                conn, sink, through=attempt.alert_id, at=datetime.now(UTC), fence=attempt.fence
            )

        await self.db.transaction(record_delivery)
        return Step(Outcome.DELIVERED)

    # ---- the alerts topic --------------------------------------------------------------------

    async def publish_alerts(self, publish: Publish, *, limit: int) -> int:
        """Publish up to `limit` alerts the topic has not had, with `publish`, and move its
        cursor past them; returns how many. Zero when another instance is relaying."""

        async def work(conn: AsyncConnection) -> int:
            cursor = await sinks.claim(conn, sinks.KAFKA, create=True)
            if cursor is None:
                return 0
            batch = await alerts.for_sink(conn, after=cursor.last_alert_id, limit=limit)
            if batch:
                await publish([(a.alert_id, a.alert) for a in batch])
                await sinks.delivered(
                    conn, sinks.KAFKA, through=batch[-1].alert_id, at=datetime.now(UTC)
                )
            return len(batch)

        return await self.db.transaction(work)

    async def topic_backlog(self) -> int:
        """Alerts the alerts topic has not had yet."""
        async with self.db.reading() as conn:
            return await sinks.backlog(conn, sinks.KAFKA)
