"""First contact: post, read, page, over the ASGI app against real PostgreSQL."""

from __future__ import annotations

import httpx

from tests.support.events import make_event


async def test_post_and_read(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/events", json=make_event(id="a1", subject="c1"))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied"
    assert r.json()["balance"] > 5.9
    r = await client.get("/v1/customers/c1")
    assert r.status_code == 200, r.text
    assert r.json()["entries"] == 1
