"""Policy, health, readiness, metrics, OpenAPI, problem details on every error (README)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.events import make_event
from tests.support.http import PROBLEM_JSON, assert_problem, get_ok, post_ok

DESIGN_PATHS = {
    "/v1/events": {"post"},
    "/v1/customers/{customer_id}": {"get", "put"},
    "/v1/customers/{customer_id}/balance": {"get"},
    "/v1/customers/{customer_id}/ledger": {"get"},
    "/v1/customers/{customer_id}/drivers": {"get"},
    "/v1/at-risk": {"get"},
    "/v1/alerts": {"get"},
    "/v1/policy": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
}


async def test_policy_is_served_as_loaded(client: httpx.AsyncClient) -> None:
    body = await get_ok(client, "/v1/policy")

    assert body["version"] == "2026-11-default"
    assert body["half_life_days"] == 90
    assert body["thresholds"] == {"at_risk_below": -15, "recover_at_or_above": -5}
    assert body["moments"]["support.resolved_first_contact"]["weight"] == 6
    assert body["moments"]["support.resolved_first_contact"]["pillar"] == "resolution"
    nps = body["moments"]["survey.nps"]
    assert nps["field"] == "score"
    assert [(b["min"], b["max"], b["weight"]) for b in nps["bands"]] == [
        (0, 6, -12),
        (7, 8, 0),
        (9, 10, 10),
    ]
    assert body["segments"]["enterprise"]["weight_multiplier"] == 1.5
    assert len(body["moments"]) >= 20


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await get_ok(client, "/healthz"))["status"] == "alive"
    assert (await get_ok(client, "/readyz"))["status"] == "ready"


async def test_metrics_have_bounded_labels_and_route_templates(client: httpx.AsyncClient) -> None:
    secret = "cust-7f3a9"
    event = make_event(id="m1", subject=secret)
    await post_ok(client, event)
    await post_ok(client, event)
    await client.post("/v1/events", json={**make_event(id="m2", subject=secret), "time": "no"})
    await get_ok(client, f"/v1/customers/{secret}")
    await get_ok(client, f"/v1/customers/{secret}/ledger")
    await client.get("/v1/customers/nobody-at-all")
    await client.get("/no/such/route/cust-7f3a9")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for outcome in ("applied", "duplicate", "rejected"):
        pattern = rf'^relbank_events_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} ([0-9.e+]+)$'
        values = [float(v) for v in re.findall(pattern, text, re.MULTILINE)]
        assert values, outcome
        assert sum(values) >= 1, outcome
    assert re.search(r'relbank_events_total\{[^}]*path="http"', text)
    http_lines = [line for line in text.splitlines() if line.startswith("relbank_http_")]
    assert any(line.startswith("relbank_http_request_seconds_bucket{") for line in http_lines)
    routes = set(re.findall(r'route="([^"]*)"', "\n".join(http_lines)))
    assert "/v1/customers/{customer_id}" in routes
    assert "/v1/customers/{customer_id}/ledger" in routes
    assert "/v1/events" in routes
    for line in http_lines:
        assert secret not in line, line
        assert "nobody-at-all" not in line, line
    # The customer read (found or not) and accepted ingest are answered by `hotpath`, the rest
    # by routes: both under the route's template.
    for method, route, status in (
        ("GET", "/v1/customers/{customer_id}", 404),
        ("GET", "/v1/customers/{customer_id}", 200),
        ("POST", "/v1/events", 200),
        ("POST", "/v1/events", 422),
    ):
        line = f'relbank_http_requests_total{{method="{method}",route="{route}",status="{status}"}}'
        assert re.search(rf"^{re.escape(line)} [1-9]", text, re.MULTILINE), (line, http_lines)


async def test_openapi_lists_every_path_of_the_contract(client: httpx.AsyncClient) -> None:
    document = await get_ok(client, "/openapi.json")

    paths = document["paths"]
    for path, methods in DESIGN_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    assert (await client.get("/docs")).status_code == 200


async def test_every_error_is_a_problem_document(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="e1", subject="c1"))
    first = make_event(id="e1", subject="c1")

    cases: list[tuple[int, httpx.Response]] = [
        (404, await client.get("/v1/customers/nobody")),
        (404, await client.get("/v1/nowhere")),
        (405, await client.delete("/v1/customers/c1")),
        (405, await client.get("/v1/events")),
        (409, await client.post("/v1/events", json={**first, "type": "sla.breached"})),
        (415, await client.post("/v1/events", content=b"{}", headers={"content-type": "a/b"})),
        (422, await client.post("/v1/events", content=b"{")),
        (422, await client.post("/v1/events", json=[])),
        (422, await client.get("/v1/customers/c1/balance", params={"at": "noon"})),
        (422, await client.get("/v1/customers/c1/ledger", params={"limit": 0})),
        (422, await client.get("/v1/customers/c1/ledger", params={"cursor": "zz"})),
        (422, await client.get("/v1/alerts", params={"after": "x"})),
        (422, await client.put("/v1/customers/c1", json={"segment": "gold"})),
        (422, await client.put("/v1/customers/c1", content=b"not json")),
        (422, await client.put("/v1/customers/" + "x" * 129, json={"segment": "smb"})),
    ]
    for status, response in cases:
        body = assert_problem(response, status=status)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert body["title"], body
    # 405 still says which methods are allowed.
    assert "GET" in cases[2][1].headers.get("allow", "").upper()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/policy", "/v1/at-risk"])
async def test_successful_answers_are_plain_json(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
