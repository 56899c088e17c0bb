"""Webhook registration through the API (README): PUT, GET, DELETE /v1/webhooks."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app import close_client, open_client
from tests.support.auth import bearer, write_keys_file
from tests.support.events import make_event
from tests.support.http import assert_problem, get_ok, post_ok

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
DELIVERY_KEYS = {
    "delivered_through",
    "backlog",
    "last_success_at",
    "last_error",
    "last_error_at",
    "failing_since",
    "attempts",
    "next_attempt_at",
    "given_up",
    "last_given_up_at",
}


async def put(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> httpx.Response:
    return await client.put(f"/v1/webhooks/{name}", json=body)


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    page = await get_ok(client, "/v1/webhooks")
    assert page["next_cursor"] is None
    return {item["name"]: item for item in page["items"]}


async def test_a_new_webhook_gets_a_secret_shown_once(client: httpx.AsyncClient) -> None:
    response = await put(client, "crm", {"url": "https://crm.example/hooks/relbank"})

    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert created["kinds"] == ["at_risk", "recovered"]
    assert created["url"] == "https://crm.example/hooks/relbank"
    assert set(created["delivery"]) == DELIVERY_KEYS
    assert created["delivery"]["backlog"] == 0
    assert created["delivery"]["last_success_at"] is None

    # Changing it without a secret keeps the secret, and never shows it again.
    again = await put(client, "crm", {"url": "https://crm.example/v2", "kinds": ["at_risk"]})
    assert again.status_code == 200, again.text
    assert "secret" not in again.json()
    hooks = await listed(client)
    assert set(hooks) == {"crm"}
    assert hooks["crm"]["url"] == "https://crm.example/v2"
    assert hooks["crm"]["kinds"] == ["at_risk"]
    assert "secret" not in hooks["crm"]
    assert secret not in (await client.get("/v1/webhooks")).text

    # A webhook's own secret is taken and not echoed either.
    own = await put(client, "mine", {"url": "http://127.0.0.1:9/x", "secret": SECRET})
    assert own.status_code == 201, own.text
    assert SECRET not in own.text
    assert sorted(await listed(client)) == ["crm", "mine"]


async def test_a_new_webhook_starts_after_the_newest_alert(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="before", subject="c1", type="cancellation.requested"))
    [before] = (await get_ok(client, "/v1/alerts"))["items"]
    created = (await put(client, "late", {"url": "https://x.example/"})).json()
    assert created["delivery"]["delivered_through"] == before["alert_id"]
    assert created["delivery"]["backlog"] == 0

    await post_ok(client, make_event(id="after", subject="c2", type="cancellation.requested"))
    await post_ok(client, make_event(id="r1", subject="c2", type="renewal.signed"))
    await post_ok(client, make_event(id="r2", subject="c2", type="referral.made"))
    assert [a["kind"] for a in (await get_ok(client, "/v1/alerts"))["items"]] == [
        "at_risk",
        "at_risk",
        "recovered",
    ]
    assert (await listed(client))["late"]["delivery"]["backlog"] == 2
    # The backlog counts only the kinds the webhook wants.
    await put(client, "late", {"url": "https://x.example/", "kinds": ["recovered"]})
    assert (await listed(client))["late"]["delivery"]["backlog"] == 1


async def test_delete_removes_a_webhook(client: httpx.AsyncClient) -> None:
    assert (await put(client, "gone", {"url": "https://x.example/"})).status_code == 201

    response = await client.delete("/v1/webhooks/gone")

    assert response.status_code == 204
    assert await listed(client) == {}
    assert_problem(await client.delete("/v1/webhooks/gone"), status=404)
    # Registered again, it is a new webhook with a new secret.
    assert (await put(client, "gone", {"url": "https://x.example/"})).json()["secret"]


BAD_BODIES = {
    "ftp url": {"url": "ftp://x.example/"},
    "no host": {"url": "https:///path"},
    "relative": {"url": "/hooks"},
    "bad port": {"url": "http://x.example:99999/"},
    "space in url": {"url": "http://x.example/a b"},
    "no url": {"kinds": ["at_risk"]},
    "unknown kind": {"url": "https://x.example/", "kinds": ["churned"]},
    "no kinds": {"url": "https://x.example/", "kinds": []},
    "secret without prefix": {"url": "https://x.example/", "secret": SECRET.removeprefix("whsec_")},
    "short secret": {"url": "https://x.example/", "secret": "whsec_" + "QUFBQQ=="},
    "secret not base64": {"url": "https://x.example/", "secret": "whsec_" + "!" * 40},
    "unknown field": {"url": "https://x.example/", "retries": 3},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_bad_webhook_is_a_422_problem(client: httpx.AsyncClient, body: Any) -> None:
    assert_problem(await put(client, "bad", body), status=422)
    assert await listed(client) == {}


@pytest.mark.parametrize("name", ["Upper", "-dash", "has space", "dot.ted", "x" * 65, "é"])
async def test_a_bad_name_is_a_422_problem(client: httpx.AsyncClient, name: str) -> None:
    assert_problem(await put(client, name, {"url": "https://x.example/"}), status=422)


async def test_a_password_in_the_url_is_masked(client: httpx.AsyncClient) -> None:
    await put(client, "basic", {"url": "https://bot:hunter2@x.example/in"})
    listing = await client.get("/v1/webhooks")
    assert "hunter2" not in listing.text
    assert listing.json()["items"][0]["url"] == "https://bot:***@x.example/in"


async def test_webhooks_need_the_admin_scope(
    clean: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    keys_file = write_keys_file(directory=tmp_path)
    client, lifespan = await open_client(database_url, auth="enabled", api_keys_file=keys_file)
    try:
        body = {"url": "https://x.example/"}
        assert_problem(await client.get("/v1/webhooks"), status=401)
        for key in ("reader", "writer"):
            assert_problem(await client.get("/v1/webhooks", headers=bearer(key)), status=403)
            assert_problem(
                await client.put("/v1/webhooks/a", json=body, headers=bearer(key)), status=403
            )
            assert_problem(await client.delete("/v1/webhooks/a", headers=bearer(key)), status=403)
        boss = bearer("boss")
        assert (await client.put("/v1/webhooks/a", json=body, headers=boss)).status_code == 201
        assert (await client.get("/v1/webhooks", headers=boss)).status_code == 200
        assert (await client.delete("/v1/webhooks/a", headers=boss)).status_code == 204
    finally:
        await close_client(client, lifespan)


async def test_openapi_documents_the_webhook_routes(client: httpx.AsyncClient) -> None:
    paths = (await get_ok(client, "/openapi.json"))["paths"]
    assert set(paths["/v1/webhooks/{name}"]) == {"put", "delete"}
    assert set(paths["/v1/webhooks"]) == {"get"}
