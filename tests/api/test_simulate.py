"""`POST /v1/policy/simulate` at the HTTP edge: bad documents, content types, auth, OpenAPI.
What the answer says is checked against a model in tests/test_simulate.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import DEFAULT_POLICY_PATH
from tests.support.app import close_client, open_client
from tests.support.auth import bearer, write_keys_file
from tests.support.events import make_event
from tests.support.http import assert_problem, post_ok
from tests.support.oracle import read_policy

PATH = "/v1/policy/simulate"
ACTIVE: dict[str, Any] = read_policy()


def document(**changes: Any) -> dict[str, Any]:
    return {**ACTIVE, "version": "candidate", **changes}


@pytest.mark.parametrize(
    ("changes", "key_path"),
    [
        ({"thresholds": {"at_risk_below": -5, "recover_at_or_above": -15}}, "thresholds"),
        ({"half_life_days": 0}, "half_life_days"),
        ({"moments": {"x.y": {"pillar": "p", "weight": "heavy"}}}, "moments.x.y.weight"),
        ({"segments": {"big": {"weight_multiplier": -1}}}, "segments.big.weight_multiplier"),
        ({"colour": "blue"}, "colour"),
        ({"version": ""}, "version"),
    ],
)
@pytest.mark.parametrize("media_type", ["application/json", "application/yaml"])
async def test_a_bad_policy_is_422_naming_the_key(
    client: httpx.AsyncClient, changes: dict[str, Any], key_path: str, media_type: str
) -> None:
    doc = document(**changes)
    body = orjson.dumps(doc) if media_type == "application/json" else yaml.safe_dump(doc).encode()
    response = await client.post(PATH, content=body, headers={"content-type": media_type})
    problem = assert_problem(response, status=422)
    assert f"{key_path}:" in problem["detail"], problem


@pytest.mark.parametrize(
    ("body", "media_type", "says"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"version: [unclosed", "application/yaml", "not valid YAML"),
        (b"- just\n- a list\n", "text/yaml", "(top level)"),
        (b"", "application/x-yaml", "(top level)"),
    ],
)
async def test_a_body_that_is_no_policy_is_422(
    client: httpx.AsyncClient, body: bytes, media_type: str, says: str
) -> None:
    response = await client.post(PATH, content=body, headers={"content-type": media_type})
    assert says in assert_problem(response, status=422)["detail"]


async def test_other_content_types_are_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PATH, content=orjson.dumps(document()), headers={"content-type": "text/plain"}
    )
    assert "application/yaml" in assert_problem(response, status=415)["detail"]


@pytest.mark.parametrize("media_type", ["text/yaml", "application/x-yaml", "application/yaml"])
async def test_every_yaml_media_type_is_accepted(
    client: httpx.AsyncClient, media_type: str
) -> None:
    await post_ok(client, make_event(id="a", subject="c1", type="sla.breached"))
    body = DEFAULT_POLICY_PATH.read_bytes()  # comments and all, as the file is written
    response = await client.post(
        PATH, content=body, headers={"content-type": f"{media_type}; charset=utf-8"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["policy_version"] == ACTIVE["version"]
    assert (answer["accounts"], answer["events"], answer["movers"]) == (1, 1, [])


async def test_simulate_needs_the_admin_scope(
    clean: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    keys = write_keys_file(directory=tmp_path)
    client, lifespan = await open_client(database_url, auth="enabled", api_keys_file=keys)
    try:
        body = orjson.dumps(document())
        assert_problem(await client.post(PATH, content=body), status=401)
        for name in ("reader", "writer"):
            response = await client.post(PATH, content=body, headers=bearer(name))
            assert_problem(response, status=403)
        response = await client.post(PATH, content=body, headers=bearer("boss"))
        assert response.status_code == 200, response.text
        assert response.json()["accounts"] == 0
    finally:
        await close_client(client, lifespan)


async def test_the_answer_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][PATH]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/yaml",
        "text/yaml",
        "application/x-yaml",
    }
    for content in operation["requestBody"]["content"].values():
        assert content["schema"] == {"$ref": "#/components/schemas/Policy"}
    assert "Policy" in spec["components"]["schemas"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/SimulationOut"
    answer = spec["components"]["schemas"]["SimulationOut"]
    assert {
        "policy_version",
        "accounts",
        "at_risk_now",
        "at_risk_simulated",
        "to_at_risk",
        "to_ok",
        "movers",
    } <= set(answer["required"])
    mover = spec["components"]["schemas"]["MoverOut"]
    assert set(mover["required"]) == {
        "customer_id",
        "balance_now",
        "balance_simulated",
        "status_now",
        "status_simulated",
    }
    assert {"401", "403", "415", "422"} <= set(operation["responses"])


async def test_one_simulation_at_a_time_and_the_next_one_is_told_when(
    client: httpx.AsyncClient, clean: AsyncEngine
) -> None:
    import asyncio

    from sqlalchemy import text

    await post_ok(client, make_event(id="s1", subject="c1"))
    body = orjson.dumps(document())
    async with clean.connect() as holder:
        # The first simulation waits on this lock inside its snapshot, so it is running for sure.
        await holder.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        first = asyncio.create_task(client.post(PATH, content=body))
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted"
        )
        async with clean.connect() as probe:
            while not (await probe.execute(text(waiting))).scalar_one():
                assert not first.done(), first.result().text
                await asyncio.sleep(0.05)
        second = await client.post(PATH, content=body)
        assert_problem(second, status=429)
        assert int(second.headers["retry-after"]) > 0
        await holder.rollback()  # releases the lock
    assert (await first).status_code == 200
    assert (await client.post(PATH, content=body)).status_code == 200
