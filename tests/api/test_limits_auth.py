"""Body limit (413 without reading the rest) and API-key auth with scopes (README)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.app import create_app
from service.api.auth import ApiKeysError
from service.domain.policy import load_policy
from service.errors import StartupError
from tests.support.app import close_client, make_settings, open_client
from tests.support.auth import KEYS, bearer, write_keys_file
from tests.support.events import make_event
from tests.support.http import assert_problem

LIMIT = 2048
CHUNK = 512


def counting_body(*, chunks: int, pulled: list[int]) -> AsyncIterator[bytes]:
    """A streamed body of `chunks` × CHUNK bytes that counts how many chunks were pulled."""

    async def generate() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            pulled[0] += 1
            yield b" " * CHUNK

    return generate()


async def test_body_over_the_limit_with_content_length_is_413_unread(
    clean: AsyncEngine, database_url: str
) -> None:
    client, lifespan = await open_client(database_url, max_body_bytes=LIMIT)
    try:
        big = orjson.dumps(make_event(id="big", subject="c1", data={"blob": "x" * LIMIT}))
        response = await client.post("/v1/events", content=big)
        assert_problem(response, status=413)

        # A declared length over the limit is refused before a single chunk is read.
        pulled = [0]
        response = await client.post(
            "/v1/events",
            content=counting_body(chunks=2000, pulled=pulled),
            headers={"content-length": str(2000 * CHUNK)},
        )
        assert_problem(response, status=413)
        assert pulled[0] == 0

        # Just under the limit is read and judged on its content.
        fits = orjson.dumps(make_event(id="fits", subject="c1", data={"blob": "x" * 1500}))
        assert len(fits) <= LIMIT
        response = await client.post("/v1/events", content=fits)
        assert response.status_code == 200, response.text
        assert (await client.get("/v1/customers/c1")).json()["entries"] == 1
    finally:
        await close_client(client, lifespan)


async def test_streamed_body_over_the_limit_is_413_and_reading_stops(
    clean: AsyncEngine, database_url: str
) -> None:
    client, lifespan = await open_client(database_url, max_body_bytes=LIMIT)
    try:
        pulled = [0]
        response = await client.post(
            "/v1/events",
            content=counting_body(chunks=2000, pulled=pulled),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert_problem(response, status=413)
        # The server stopped at the first chunk past the limit, not at the end of the stream.
        assert pulled[0] == LIMIT // CHUNK + 1
        assert (await client.get("/v1/alerts")).json()["items"] == []
    finally:
        await close_client(client, lifespan)


async def test_api_keys_and_scopes(clean: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    keys_file = write_keys_file(directory=tmp_path)
    client, lifespan = await open_client(database_url, auth="enabled", api_keys_file=keys_file)
    try:
        event = make_event(id="a1", subject="c1")

        # No key, an unknown key, a key in the wrong scheme: 401 with a challenge.
        for headers in (
            {},
            {"authorization": "Bearer not-a-key"},
            {"authorization": f"Basic {KEYS['boss']}"},
            {"authorization": "Bearer "},
            {"authorization": hashlib.sha256(KEYS["boss"].encode()).hexdigest()},
        ):
            for method, path in (
                ("POST", "/v1/events"),
                ("GET", "/v1/customers/c1"),
                ("PUT", "/v1/customers/c1"),
                ("GET", "/v1/alerts"),
            ):
                response = await client.request(
                    method,
                    path,
                    headers=headers,
                    json=event if method == "POST" else {"segment": "smb"},
                )
                assert_problem(response, status=401)
                assert response.headers["www-authenticate"].lower().startswith("bearer")
        # The hash itself is not a key.
        response = await client.get(
            "/v1/policy",
            headers={
                "authorization": f"Bearer {hashlib.sha256(KEYS['boss'].encode()).hexdigest()}"
            },
        )
        assert_problem(response, status=401)

        # A known key without the scope: 403.
        response = await client.post("/v1/events", json=event, headers=bearer("reader"))
        assert_problem(response, status=403)
        for path in ("/v1/customers/c1", "/v1/at-risk", "/v1/alerts", "/v1/policy"):
            assert_problem(await client.get(path, headers=bearer("writer")), status=403)
        for name in ("reader", "writer"):
            response = await client.put(
                "/v1/customers/c1", json={"segment": "smb"}, headers=bearer(name)
            )
            assert_problem(response, status=403)
        assert (await client.get("/v1/customers/c1", headers=bearer("boss"))).status_code == 404

        # The right scope: through.
        response = await client.post("/v1/events", json=event, headers=bearer("writer"))
        assert response.status_code == 200, response.text
        response = await client.get("/v1/customers/c1", headers=bearer("reader"))
        assert response.status_code == 200, response.text
        # The scheme is case-insensitive.
        response = await client.get(
            "/v1/policy", headers={"authorization": f"bearer {KEYS['reader']}"}
        )
        assert response.status_code == 200, response.text

        # admin implies the others.
        boss = bearer("boss")
        response = await client.post(
            "/v1/events", json=make_event(id="a2", subject="c1"), headers=boss
        )
        assert response.status_code == 200, response.text
        response = await client.put("/v1/customers/c1", json={"segment": "smb"}, headers=boss)
        assert response.status_code == 200, response.text
        for path in (
            "/v1/customers/c1",
            "/v1/customers/c1/balance",
            "/v1/customers/c1/ledger",
            "/v1/customers/c1/drivers",
            "/v1/at-risk",
            "/v1/alerts",
            "/v1/policy",
        ):
            response = await client.get(path, headers=boss)
            assert response.status_code == 200, (path, response.text)
        assert (await client.get("/v1/customers/c1", headers=boss)).json()["segment"] == "smb"

        # Operations endpoints need no key, but /metrics (it names at-risk customers).
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        response = await client.get("/metrics")
        assert_problem(response, status=401)
        assert response.headers["www-authenticate"].lower().startswith("bearer")
        for name in ("reader", "writer"):
            assert_problem(await client.get("/metrics", headers=bearer(name)), status=403)
        for name in ("prometheus", "boss"):
            response = await client.get("/metrics", headers=bearer(name))
            assert response.status_code == 200, (name, response.text)
            assert "relbank_events_total" in response.text
        # The metrics key reads nothing else.
        for path in ("/v1/customers/c1", "/v1/at-risk", "/v1/alerts"):
            assert_problem(await client.get(path, headers=bearer("prometheus")), status=403)
    finally:
        await close_client(client, lifespan)


async def test_a_bad_keys_file_stops_start_up(
    clean: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        yaml.safe_dump([{"name": "x", "sha256": "nothex", "scopes": ["read"]}]), encoding="utf-8"
    )
    with pytest.raises((ApiKeysError, StartupError), match="sha256"):
        create_app(make_settings(database_url, auth="enabled", api_keys_file=path), load_policy())


async def test_auth_enabled_without_a_keys_file_refuses_to_start(database_url: str) -> None:
    settings = make_settings(database_url, auth="enabled", api_keys_file=None)
    with pytest.raises(StartupError) as stopped:
        create_app(settings, load_policy())
    assert "RELBANK_API_KEYS_FILE" in str(stopped.value)
    assert "RELBANK_AUTH=disabled" in str(stopped.value)
