"""The webhook relay (README): every alert, as the CloudEvent the alerts topic carries, POSTed
to each webhook that wants its kind, signed as Standard Webhooks says.

One task per webhook, so a slow or failing receiver holds back no other webhook (nor the alerts
topic, which has its own relay). Progress and retry state live in the database
(`service.sinks`), so delivery goes on after a restart where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

import httpx
import orjson
from prometheus_client.metrics import MetricWrapperBase
from standardwebhooks import Webhook as Signer

from service import metrics, wire
from service.domain.ledger import Alert
from service.errors import summary
from service.retry import backoff
from service.runtime import Runtime
from service.sinks import DeliveryFailed, Outcome, Retry, Send, Step
from service.storage.webhooks import Webhook

log = logging.getLogger("relbank.webhooks")
IDLE_SECONDS = 0.5
# Longest sleep before looking at a waiting webhook again (a changed webhook retries at once).
WAIT_SECONDS = 2.0
# How often the list of webhooks is read for new ones.
WATCH_SECONDS = 1.0
_GO_ON = (Outcome.DELIVERED, Outcome.GAVE_UP, Outcome.SKIPPED)


def signed_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`."""
    sent_at = datetime.fromtimestamp(int(now.timestamp()), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Signer(secret).sign(msg_id, sent_at, body.decode()),
    }


def sender(client: httpx.AsyncClient, *, timeout: float) -> Send:
    """POST an alert; anything but a 2xx within `timeout` raises `DeliveryFailed`. The answer's
    body is never read."""

    async def send(hook: Webhook, alert_id: int, alert: Alert) -> None:
        body = orjson.dumps(wire.alert_cloudevent(alert_id, alert))
        headers = {
            "content-type": wire.CLOUDEVENT_CONTENT_TYPE,
            "user-agent": f"relbank/{metrics.VERSION}",
            **signed_headers(hook.secret, str(alert_id), body, datetime.now(UTC)),
        }
        try:
            async with (
                asyncio.timeout(timeout),
                client.stream("POST", hook.url, content=body, headers=headers) as response,
            ):
                status = response.status_code
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(summary(exc)) from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"answered HTTP {status}")

    return send


def retry_of(rt: Runtime) -> Retry:
    s = rt.settings
    return Retry(
        s.webhook_retry_base_seconds,
        s.webhook_retry_cap_seconds,
        s.webhook_give_up_after_seconds,
        s.webhook_timeout_seconds,
    )


async def run_webhooks(rt: Runtime) -> None:
    """Until cancelled: a delivery task per registered webhook, started as webhooks appear."""
    timeout = rt.settings.webhook_timeout_seconds
    tasks: dict[str, asyncio.Task[None]] = {}
    errors = _Failures("listing webhooks")
    # Who holds a webhook's lease while a delivery is in flight (one per relay run).
    owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        send = sender(client, timeout=timeout)
        try:
            while True:
                try:
                    names = await rt.app.sinks.webhook_names()
                except Exception as exc:
                    await errors.wait_after(exc)
                    continue
                errors.clear()
                for name in [n for n, t in tasks.items() if t.done()]:
                    del tasks[name]
                for name in names:
                    if name not in tasks:
                        tasks[name] = asyncio.create_task(_deliver(rt, name, send, owner))
                await asyncio.sleep(WATCH_SECONDS)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _deliver(rt: Runtime, name: str, send: Send, owner: str) -> None:
    """Deliver to one webhook until it is removed (or the relay is cancelled)."""
    retry = retry_of(rt)
    errors = _Failures(f"webhook {name}: a relay step")
    while True:
        try:
            step = await rt.app.sinks.deliver_webhook(name, send, retry, owner=owner)
        except Exception as exc:
            await errors.wait_after(exc)
            continue
        errors.clear()
        _count(name, step)
        if step.outcome is Outcome.GONE:
            _forget(name)
            return
        if step.outcome in _GO_ON:
            continue
        if step.outcome is Outcome.WAITING or step.outcome is Outcome.FAILED:
            assert step.next_attempt_at is not None
            due = (step.next_attempt_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(min(max(due, 0.0), WAIT_SECONDS))
        else:
            await asyncio.sleep(IDLE_SECONDS)


class _Failures:
    """Consecutive failures of the relay's own steps (the database, not a receiver)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0

    async def wait_after(self, exc: Exception) -> None:
        self.count += 1
        delay = backoff(self.count)
        log.error("%s failed (%s); retrying in %.1fs", self.what, summary(exc), delay)
        await asyncio.sleep(delay)

    def clear(self) -> None:
        if self.count:
            log.info("%s works again", self.what)
        self.count = 0
        metrics.RELAY_LAST_SUCCESS.labels(sink="webhook").set_to_current_time()


def _count(name: str, step: Step) -> None:
    if step.outcome is Outcome.DELIVERED:
        metrics.WEBHOOK_DELIVERIES.labels(webhook=name, outcome="delivered").inc()
    elif step.outcome is Outcome.FAILED:
        metrics.WEBHOOK_DELIVERIES.labels(webhook=name, outcome="failed").inc()
        log.warning(
            "webhook %s: delivery failed (%s); next attempt at %s",
            name,
            step.error,
            step.next_attempt_at,
        )
    elif step.outcome is Outcome.GAVE_UP:
        metrics.WEBHOOK_GIVEN_UP.labels(webhook=name).inc(step.count)
        log.warning("webhook %s: gave up on %d alerts after failing too long", name, step.count)


def _forget(name: str) -> None:
    """A removed webhook's series go too."""
    for outcome in ("delivered", "failed"):
        _remove(metrics.WEBHOOK_DELIVERIES, name, outcome)
    _remove(metrics.WEBHOOK_GIVEN_UP, name)


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
