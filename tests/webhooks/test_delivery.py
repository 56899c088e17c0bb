"""Webhook delivery against a real HTTP receiver (README): every alert arrives, signed as
Standard Webhooks says, in order per customer, through failures, a timeout and a restart; a
webhook failing for too long gives alerts up; a stuck webhook holds back no other."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook as Verifier

from service.api.app import create_app
from service.domain.policy import Policy
from service.runtime import Service
from service.sweeper import run_sweeper
from service.webhook_relay import run_webhooks
from tests.support.app import make_settings, runtime_for
from tests.support.events import make_event
from tests.support.http import all_alerts, get_ok, post_ok
from tests.support.policy import make_policy
from tests.support.waiting import wait_for
from tests.webhooks.receiver import HANG, Receiver, Request

# Each waits on a real consumer group or a relay's poll loop: the full run only.
pytestmark = pytest.mark.slow

FAST_RETRIES: dict[str, Any] = {
    "webhook_timeout_seconds": 1.0,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_cap_seconds": 0.2,
}


@asynccontextmanager
async def serving(
    database_url: str, policy: Policy, services: list[Service], **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An `all` process with `services` running, through its ASGI app; leaving it stops the
    process (its services are cancelled), as a restart would."""
    app = create_app(
        make_settings(database_url, **{**FAST_RETRIES, **overrides}), policy, services=services
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


async def register(client: httpx.AsyncClient, name: str, url: str, **body: Any) -> str:
    response = await client.put(f"/v1/webhooks/{name}", json={"url": url, **body})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


async def swing(client: httpx.AsyncClient, customers: list[str], rounds: range) -> None:
    """Alerts, alternately at_risk and recovered per customer: two cancellations (-40), then
    three renewals (+45), and so on; every round crosses a level."""
    for j in rounds:
        kind, n = ("cancellation.requested", 2) if j % 2 == 0 else ("renewal.signed", 3)
        await post_ok(
            client,
            [
                make_event(id=f"{c}-{j}-{m}", subject=c, type=kind)
                for c in customers
                for m in range(n)
            ],
        )


def assert_signed(request: Request, secret: str) -> None:
    """Standard Webhooks: the library's verifier takes it, and so does the spec by hand."""
    Verifier(secret).verify(request.body, request.headers)
    msg_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(mac.digest()).decode()
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert msg_id == request.event["id"]


def assert_is_the_alert(request: Request, item: dict[str, Any]) -> None:
    """The body is the alerts topic's CloudEvent of the feed's alert, `at` carried unchanged."""
    event = request.event
    assert event["specversion"] == "1.0"
    assert event["id"] == str(item["alert_id"])
    assert event["type"] == f"relbank.account.{item['kind']}"
    assert event["subject"] == item["customer_id"]
    assert event["time"] == item["at"]
    assert event["data"] == item


def first_receipts(requests: list[Request]) -> list[int]:
    """Alert ids in the order the receiver first took them (repeats dropped)."""
    seen: list[int] = []
    for request in requests:
        alert_id = int(request.event["id"])
        if alert_id not in seen:
            seen.append(alert_id)
    return seen


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def webhook_state(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    [item] = [i for i in (await get_ok(client, "/v1/webhooks"))["items"] if i["name"] == name]
    delivery: dict[str, Any] = item["delivery"]
    return delivery


@pytest.mark.slow
async def test_every_alert_arrives_signed_and_in_order_through_failures_and_a_restart(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    # Eight 500s, then one request left without an answer (over the 1 s timeout), then 2xx.
    def plan(n: int) -> int:
        return 500 if n <= 8 else HANG if n == 9 else 204

    customers = ["acme", "globex", "initech"]
    with Receiver(plan) as receiver:
        async with serving(database_url, default_policy, [run_webhooks]) as client:
            secret = await register(client, "crm", receiver.url)
            await swing(client, customers, range(4))

            async def failing_visibly() -> bool:
                state = await webhook_state(client, "crm")
                return (
                    state["failing_since"] is not None
                    and state["last_error"] in ("answered HTTP 500", "no answer within 1s")
                    and state["attempts"] >= 1
                    and state["backlog"] == 12
                )

            await wait_for(failing_visibly, within=30, what="GET /v1/webhooks to show failures")

            async def some_taken() -> bool:
                return len(receiver.taken()) >= 4

            await wait_for(some_taken, within=60, what="deliveries after the failures")
        # Restarted: alerts raised while it was down arrive too, after the ones before.
        async with serving(database_url, default_policy, []) as client:
            await swing(client, customers, range(4, 6))
        async with serving(database_url, default_policy, [run_webhooks]) as client:
            feed = await all_alerts(client)
            assert len(feed) == 18

            async def all_taken() -> bool:
                taken = set(first_receipts(receiver.taken())) == {a["alert_id"] for a in feed}
                return taken and (await webhook_state(client, "crm"))["backlog"] == 0

            await wait_for(all_taken, within=60, what="every alert taken and recorded")
            state = await webhook_state(client, "crm")
            text = (await client.get("/metrics")).text

    requests = receiver.all()
    assert [r.answer for r in requests[:9]] == [500] * 8 + [HANG]
    by_id = {a["alert_id"]: a for a in feed}
    for request in requests:
        assert request.path == "/hooks/relbank"
        assert_signed(request, secret)
        assert_is_the_alert(request, by_id[int(request.event["id"])])
    # The failed and timed-out alert was the first one, retried until taken.
    assert {int(r.event["id"]) for r in requests[:10]} == {feed[0]["alert_id"]}
    taken = first_receipts(receiver.taken())
    for customer in customers:
        theirs = [a["alert_id"] for a in feed if a["customer_id"] == customer]
        assert [i for i in taken if by_id[i]["customer_id"] == customer] == theirs
        assert [by_id[i]["kind"] for i in theirs] == ["at_risk", "recovered"] * 3

    assert state["backlog"] == 0
    assert state["delivered_through"] == feed[-1]["alert_id"]
    assert state["failing_since"] is None
    assert state["attempts"] == 0
    assert state["given_up"] == 0
    assert state["last_success_at"] is not None
    assert state["last_error"] == "no answer within 1s"
    deliveries = samples(text, "relbank_webhook_deliveries_total")
    assert deliveries[(("outcome", "failed"), ("webhook", "crm"))] >= 9
    # (A delivery cut off by the restart after it was recorded goes uncounted.)
    assert deliveries[(("outcome", "delivered"), ("webhook", "crm"))] >= 12
    relay_success = samples(text, "relbank_relay_last_success_timestamp_seconds")
    assert relay_success[(("sink", "webhook"),)] > 0


async def test_alerts_are_given_up_after_failing_too_long_and_delivery_goes_on(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    answer = [500]
    with Receiver(lambda n: answer[0]) as receiver:
        async with serving(
            database_url, default_policy, [run_webhooks], webhook_give_up_after_seconds=1.0
        ) as client:
            secret = await register(client, "flaky", receiver.url)
            await swing(client, ["c1", "c2"], range(1))

            async def gave_up() -> bool:
                given_up: int = (await webhook_state(client, "flaky"))["given_up"]
                return given_up == 2

            await wait_for(gave_up, within=30, what="both alerts given up")
            state = await webhook_state(client, "flaky")
            assert state["backlog"] == 0
            assert state["last_given_up_at"] is not None
            assert state["failing_since"] is not None
            assert len(receiver.all()) >= 2
            given_up = samples(
                (await client.get("/metrics")).text, "relbank_webhook_given_up_total"
            )
            assert given_up[(("webhook", "flaky"),)] == 2

            # The receiver recovers: the next alert is delivered, and the failure is over.
            answer[0] = 200
            await swing(client, ["c1"], range(1, 2))

            async def delivered() -> bool:
                return (
                    bool(receiver.taken())
                    and (await webhook_state(client, "flaky"))["failing_since"] is None
                )

            await wait_for(delivered, within=30, what="the next alert delivered and recorded")
            [taken] = receiver.taken()
            assert_signed(taken, secret)
            assert taken.event["data"]["kind"] == "recovered"
            state = await webhook_state(client, "flaky")
            assert state["failing_since"] is None
            assert state["given_up"] == 2


async def test_a_stuck_webhook_holds_back_no_other(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    with (
        Receiver(lambda n: HANG) as stuck,
        Receiver() as fast,
        Receiver() as recoveries,
    ):
        async with serving(
            database_url, default_policy, [run_webhooks], webhook_timeout_seconds=5.0
        ) as client:
            await register(client, "stuck", stuck.url)
            await register(client, "fast", fast.url)
            await register(client, "recoveries", recoveries.url, kinds=["recovered"])
            await swing(client, ["a", "b"], range(4))
            feed = await all_alerts(client)
            recovered = [a["alert_id"] for a in feed if a["kind"] == "recovered"]

            async def others_done() -> bool:
                return (
                    first_receipts(fast.taken()) == [a["alert_id"] for a in feed]
                    and first_receipts(recoveries.taken()) == recovered
                    and (await webhook_state(client, "fast"))["backlog"] == 0
                    and (await webhook_state(client, "recoveries"))["backlog"] == 0
                )

            await wait_for(others_done, within=30, what="the other webhooks to get everything")
            # Meanwhile the stuck one is still on its first alert.
            assert {int(r.event["id"]) for r in stuck.all()} == {feed[0]["alert_id"]}
            assert (await webhook_state(client, "stuck"))["backlog"] == len(feed)

            async def counted() -> bool:
                text = (await client.get("/metrics")).text
                found = samples(text, "relbank_webhook_deliveries_total")
                return found.get((("outcome", "delivered"), ("webhook", "fast"))) == len(
                    feed
                ) and found.get((("outcome", "delivered"), ("webhook", "recoveries"))) == len(
                    recovered
                )

            await wait_for(counted, within=10, what="the deliveries counted")
            text = (await client.get("/metrics")).text
    deliveries = samples(text, "relbank_webhook_deliveries_total")
    assert (("outcome", "delivered"), ("webhook", "stuck")) not in deliveries


async def test_a_removed_webhook_gets_nothing_more(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    with Receiver() as receiver:
        async with serving(database_url, default_policy, [run_webhooks]) as client:
            await register(client, "brief", receiver.url)
            await swing(client, ["c1"], range(1))

            async def one_taken() -> bool:
                return len(receiver.taken()) == 1

            await wait_for(one_taken, within=30, what="the first alert delivered")
            assert (await client.delete("/v1/webhooks/brief")).status_code == 204
            await swing(client, ["c1"], range(1, 3))
            # Another webhook registered after it sees the later alert: the relay is running.
            with Receiver() as witness:
                await register(client, "witness", witness.url)
                await swing(client, ["c1"], range(3, 4))

                async def witnessed() -> bool:
                    return len(witness.taken()) == 1

                await wait_for(witnessed, within=30, what="the witness webhook's delivery")
    assert len(receiver.all()) == 1


async def test_a_decay_alert_arrives_with_the_time_the_feed_has(
    clean: AsyncEngine, database_url: str
) -> None:
    """A fall into risk by silence alone (a 2-second half-life): the sweeper raises it and the
    webhook carries its `at` unchanged."""
    policy = make_policy(
        half_life_days=2 / 86_400, thresholds={"at_risk_below": 5, "recover_at_or_above": 10}
    )
    with Receiver() as receiver:
        async with serving(
            database_url, policy, [run_sweeper, run_webhooks], sweep_interval_seconds=0.2
        ) as client:
            secret = await register(client, "decay", receiver.url)
            now = datetime.now(UTC).isoformat()
            await post_ok(
                client, make_event(id="r", subject="quiet", type="renewal.signed", time=now)
            )

            async def delivered() -> bool:
                return len(receiver.taken()) == 1

            await wait_for(delivered, within=30, what="the decay alert delivered")
            [item] = await all_alerts(client)
    [request] = receiver.taken()
    assert_signed(request, secret)
    assert item["cause"] == "decay"
    assert item["kind"] == "at_risk"
    assert_is_the_alert(request, item)


async def test_two_relays_deliver_each_alert_once_in_order(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    """Two workers: one delivery at a time per webhook, whichever instance makes it."""
    settings = make_settings(database_url, **FAST_RETRIES)
    with Receiver() as receiver:
        async with serving(database_url, default_policy, []) as client:
            await register(client, "shared", receiver.url)
            relays = [
                asyncio.create_task(run_webhooks(runtime_for(settings, clean, default_policy)))
                for _ in range(2)
            ]
            try:
                await swing(client, ["p", "q", "r"], range(4))
                feed = await all_alerts(client)

                async def all_taken() -> bool:
                    return len(receiver.taken()) >= len(feed)

                await wait_for(all_taken, within=60, what="every alert delivered")
            finally:
                for relay in relays:
                    relay.cancel()
                await asyncio.gather(*relays, return_exceptions=True)
    taken = [int(r.event["id"]) for r in receiver.taken()]
    assert taken == [a["alert_id"] for a in feed]
