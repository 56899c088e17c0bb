"""The operational metrics (README, issue 9): database probe, gauge freshness, the at-risk set
exported by the worker only, sweeper and relay health, pool and build info."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics
from service.api.app import create_app
from service.cli import _services
from service.domain.policy import Policy
from service.monitoring import GaugeRefresher, probe, run_database_probe, run_gauges
from service.runtime import ROLES, Role, Runtime, Service
from service.settings import Settings
from service.sweeper import run_sweeper
from service.webhook_relay import run_webhooks
from tests.support.app import make_settings, runtime_for
from tests.support.events import make_event
from tests.support.http import post_ok
from tests.support.waiting import wait_for

WORKER_ONLY = {
    "relbank_accounts",
    "relbank_at_risk_balance",
    "relbank_at_risk_unlisted",
    "relbank_outbox_pending",
    "relbank_gauges_refreshed_timestamp_seconds",
    "relbank_gauge_refresh_failures_total",
    "relbank_gauge_refresh_failures_created",
    "relbank_sweeper_last_success_timestamp_seconds",
    "relbank_relay_last_success_timestamp_seconds",
    "relbank_webhook_backlog",
    "relbank_webhook_deliveries_total",
    "relbank_webhook_given_up_total",
}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> tuple[set[str], Samples]:
    """The names of the samples, and each sample by name and sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return set(found), found


@asynccontextmanager
async def process(
    settings: Settings, policy: Policy, role: Role, services: list[Service]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, policy, role=role, services=services)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


async def scrape(client: httpx.AsyncClient) -> tuple[set[str], Samples]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def at_risk(client: httpx.AsyncClient, customers: list[str]) -> None:
    for c in customers:
        await post_ok(client, make_event(id=f"bye-{c}", subject=c, type="cancellation.requested"))


async def test_the_worker_alone_exports_the_database_gauges(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    metrics.AT_RISK_BALANCE.clear()
    settings = make_settings(database_url, at_risk_gauge_limit=1, metrics_refresh_seconds=0.2)
    customers = ["m-low", "m-mid", "m-high"]
    async with process(settings, default_policy, "api", [run_database_probe]) as api:
        await at_risk(api, customers)
        await post_ok(api, make_event(id="fine", subject="m-ok", type="renewal.signed"))
        hook = await api.put("/v1/webhooks/metered", json={"url": "http://127.0.0.1:9/"})
        assert hook.status_code == 201
        await post_ok(api, make_event(id="more", subject="m-late", type="cancellation.requested"))
        async with process(settings, default_policy, "worker", [run_gauges]) as worker:
            started = time.time()

            async def refreshed() -> bool:
                _, found = await scrape(worker)
                stamp = found.get("relbank_gauges_refreshed_timestamp_seconds", {}).get((), 0)
                return stamp >= started

            await wait_for(refreshed, within=30, what="the worker's gauges refreshed")
            families, found = await scrape(worker)
        api_families, api_found = await scrape(api)

    assert WORKER_ONLY & api_families == set()
    assert {"relbank_database_up", "relbank_build_info", "relbank_db_pool_connections"} <= (
        api_families
    )
    assert api_found["relbank_database_up"][()] == 1
    assert {"relbank_accounts", "relbank_at_risk_balance", "relbank_at_risk_unlisted"} <= families
    accounts = found["relbank_accounts"]
    assert accounts[(("status", "at_risk"),)] == 4
    assert accounts[(("status", "ok"),)] == 1
    # One account listed (the limit), the other three counted as unlisted.
    [(labels, balance)] = found["relbank_at_risk_balance"].items()
    assert labels[0][0] == "customer_id"
    assert labels[0][1] in [*customers, "m-late"]
    assert balance < -15
    assert found["relbank_at_risk_unlisted"][()] == 3
    # Four at_risk alerts, of which the webhook (registered after three) has one to deliver.
    assert found["relbank_webhook_backlog"][(("webhook", "metered"),)] == 1
    assert found["relbank_outbox_pending"][()] == 0  # no Kafka: no topic to be behind
    assert found["relbank_gauge_refresh_failures_total"][()] >= 0


async def test_a_failed_refresh_keeps_the_values_but_not_the_freshness(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    metrics.AT_RISK_BALANCE.clear()
    good = runtime_for(make_settings(database_url), clean, default_policy)
    async with process(make_settings(database_url), default_policy, "api", []) as api:
        await at_risk(api, ["stale-1"])
    refresher = GaugeRefresher()
    assert await refresher.refresh(good)
    _, before = parse(metrics.exposition(worker=True).decode())
    refreshed_at = before["relbank_gauges_refreshed_timestamp_seconds"][()]
    failures = before["relbank_gauge_refresh_failures_total"][()]

    gone = Runtime.build(make_settings("postgresql://postgres@127.0.0.1:1/nowhere"), default_policy)
    try:
        assert not await refresher.refresh(gone)
        assert not await probe(gone)
        async with process(make_settings(database_url), default_policy, "worker", []) as worker:
            _, after = await scrape(worker)
    finally:
        await gone.close()

    assert after["relbank_gauge_refresh_failures_total"][()] == failures + 1
    assert after["relbank_gauges_refreshed_timestamp_seconds"][()] == refreshed_at
    assert after["relbank_database_up"][()] == 0
    # The at-risk account stays listed (no false "resolved"), its age told by the timestamp.
    assert after["relbank_at_risk_balance"] == before["relbank_at_risk_balance"]
    assert [dict(k) for k in after["relbank_at_risk_balance"]] == [
        {"customer_id": "stale-1", "segment": ""}
    ]

    assert await probe(good)
    _, back = parse(metrics.exposition(worker=False).decode())
    assert back["relbank_database_up"][()] == 1
    pool = back["relbank_db_pool_connections"]
    assert set(pool) == {(("state", "in_use"),), (("state", "idle"),)}
    assert all(v >= 0 for v in pool.values())


async def test_the_sweeper_reports_its_last_success(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> None:
    settings = make_settings(database_url, sweep_interval_seconds=0.2)
    before = time.time()
    rt = runtime_for(settings, clean, default_policy)
    sweeper = asyncio.create_task(run_sweeper(rt))
    try:

        async def swept() -> bool:
            _, found = parse(metrics.exposition(worker=True).decode())
            stamp = found.get("relbank_sweeper_last_success_timestamp_seconds", {}).get((), 0)
            return stamp >= before

        await wait_for(swept, within=30, what="a sweep recorded")
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)


async def test_build_info_names_the_version(client: httpx.AsyncClient) -> None:
    _, found = await scrape(client)
    [(labels, value)] = found["relbank_build_info"].items()
    assert dict(labels) == {"version": metrics.VERSION}
    assert metrics.VERSION != "unknown"
    assert value == 1


@pytest.mark.parametrize("role", ROLES)
def test_every_role_probes_the_database_and_only_the_worker_refreshes_and_relays(
    role: Role, database_url: str
) -> None:
    services = _services(make_settings(database_url), role)
    assert run_database_probe in services
    worker = role in ("all", "worker")
    assert (run_gauges in services) == worker
    assert (run_webhooks in services) == worker
    assert (run_sweeper in services) == worker
