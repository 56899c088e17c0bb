"""Policy activation (README): a replay makes its policy the active one for every running
instance, without a restart; readers never see a half-rebuilt ledger; an instance started with a
policy the database has since replaced follows the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.app import create_app
from service.domain.policy import Policy
from service.runtime import Runtime
from tests.support.app import make_settings
from tests.support.events import make_event
from tests.support.policy import make_policy
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Instance:
    """One running relbank process's worth: its Runtime and an HTTP client on its app."""

    rt: Runtime
    http: httpx.AsyncClient
    lifespan: Any

    async def get(self, path: str) -> Any:
        response = await self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def post_event(self, **event: Any) -> Any:
        response = await self.http.post("/v1/events", json=make_event(**event))
        assert response.status_code == 200, response.text
        return response.json()


async def start(database_url: str, policy: Policy) -> Instance:
    app = create_app(make_settings(database_url), policy)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relbank")
    return Instance(app.state.runtime, http, lifespan)


async def stop(instance: Instance) -> None:
    await instance.http.aclose()
    await instance.lifespan.__aexit__(None, None, None)


@pytest.fixture
async def two(
    clean: AsyncEngine, database_url: str, default_policy: Policy
) -> AsyncIterator[tuple[Instance, Instance]]:
    a = await start(database_url, default_policy)
    b = await start(database_url, default_policy)
    yield a, b
    await stop(a)
    await stop(b)


def harsher(default_policy: Policy) -> Policy:
    """promise.broken weighs -12 by default; -30 here."""
    return make_policy(
        version="harsher",
        moments={
            **default_policy.model_dump(mode="json")["moments"],
            "promise.broken": {"weight": -30, "pillar": "integrity"},
        },
    )


async def reports(instance: Instance, version: str) -> None:
    async def active() -> bool:
        return bool((await instance.get("/v1/policy"))["version"] == version)

    await wait_for(active, within=15, what=f"the instance to report policy {version}")


@pytest.mark.slow
async def test_a_replay_through_one_instance_is_followed_by_the_other(
    two: tuple[Instance, Instance], default_policy: Policy
) -> None:
    a, b = two
    await b.post_event(id="p1", subject="c1", type="promise.broken")
    assert (await b.get("/v1/customers/c1"))["balance"] == pytest.approx(-12, rel=1e-3)

    await a.rt.app.replay(harsher(default_policy))

    # B did nothing meanwhile; it reports the new policy within a few seconds by itself.
    await reports(b, "harsher")
    view = await b.get("/v1/customers/c1")
    assert view["policy_version"] == "harsher"
    assert view["balance"] == pytest.approx(-30, rel=1e-3)
    ledger = await b.get("/v1/customers/c1/ledger")
    assert [(e["amount"], e["policy_version"]) for e in ledger["items"]] == [(-30, "harsher")]
    # New events are weighed under it, through either instance.
    result = await b.post_event(id="p2", subject="c2", type="promise.broken")
    assert result["balance"] == pytest.approx(-30, rel=1e-3)
    result = await a.post_event(id="p3", subject="c2", type="promise.broken")
    assert result["balance"] == pytest.approx(-60, rel=1e-3)
    ledger = await a.get("/v1/customers/c2/ledger")
    assert {e["policy_version"] for e in ledger["items"]} == {"harsher"}


async def test_a_write_right_after_the_replay_is_weighed_under_the_new_policy(
    two: tuple[Instance, Instance], default_policy: Policy
) -> None:
    """Writers read the active policy in their own transaction: no window where another
    instance weighs under the old one."""
    a, b = two
    await b.post_event(id="p1", subject="c1", type="promise.broken")
    assert b.rt.policy.version == default_policy.version
    await a.rt.app.replay(harsher(default_policy))
    result = await b.post_event(id="p2", subject="c1", type="promise.broken")
    assert result["balance"] == pytest.approx(-60, rel=1e-3)
    assert b.rt.policy.version == "harsher"


async def test_readers_never_see_a_half_rebuilt_ledger(
    two: tuple[Instance, Instance], default_policy: Policy
) -> None:
    a, b = two
    customers = [f"c{i}" for i in range(5)]
    per_customer = 300
    for n in range(per_customer // 100):
        batch = [
            make_event(id=f"p{c}-{n}-{i}", subject=c, type="promise.broken")
            for c in customers
            for i in range(100)
        ]
        response = await a.http.post("/v1/events", json=batch)
        assert response.status_code == 200, response.text
    seen: set[tuple[str, ...]] = set()
    reading = asyncio.Event()

    async def read_while_replaying() -> None:
        while True:
            for customer in customers:
                page = await b.get(f"/v1/customers/{customer}/ledger?limit=1000")
                versions = tuple(sorted({e["policy_version"] for e in page["items"]}))
                assert len(page["items"]) == per_customer, "a half-built ledger was read"
                seen.add(versions)
            reading.set()

    reader = asyncio.create_task(read_while_replaying())
    try:

        async def old_ledger_read() -> bool:
            assert not reader.done(), reader
            return reading.is_set()

        await wait_for(old_ledger_read, within=30, what="a read of the ledger before the replay")
        await a.rt.app.replay(harsher(default_policy))

        async def new_ledger_read() -> bool:
            assert not reader.done(), reader
            return ("harsher",) in seen

        await wait_for(new_ledger_read, within=30, what="a read of the rebuilt ledger")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    # Every read saw one whole ledger: the old one, then the new one.
    assert seen == {(default_policy.version,), ("harsher",)}


@pytest.mark.slow
async def test_relbank_replay_activates_for_running_instances_and_stale_config_follows(
    two: tuple[Instance, Instance],
    database_url: str,
    default_policy: Policy,
    tmp_path: Path,
) -> None:
    a, b = two
    await a.post_event(id="p1", subject="c1", type="promise.broken")
    policy_file = tmp_path / "harsher.yaml"
    policy_file.write_text(yaml.safe_dump(harsher(default_policy).model_dump(mode="json")))
    env = {
        **os.environ,
        "RELBANK_DATABASE_URL": database_url,
        "RELBANK_AUTH": "disabled",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "replay", "--policy", str(policy_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "policy harsher" in done.stdout
    for instance in (a, b):
        await reports(instance, "harsher")
        view = await instance.get("/v1/customers/c1")
        assert (view["policy_version"], round(view["balance"])) == ("harsher", -30)

    # A process (re)started with the old RELBANK_POLICY does not revert the replay.
    c = await start(database_url, default_policy)
    try:
        assert (await c.get("/v1/policy"))["version"] == "harsher"
        result = await c.post_event(id="p2", subject="c3", type="promise.broken")
        assert result["balance"] == pytest.approx(-30, rel=1e-3)
    finally:
        await stop(c)
    await reports(a, "harsher")
    # A policy version the database has never seen is a deliberate change: it is activated.
    newer = make_policy(version="newer")
    d = await start(database_url, newer)
    try:
        assert (await d.get("/v1/policy"))["version"] == "newer"
    finally:
        await stop(d)
    await reports(b, "newer")
