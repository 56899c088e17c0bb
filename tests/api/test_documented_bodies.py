"""Every operation of /openapi.json, called for real: each answer's status is one the operation
declares, its media type one declared for that status, and its body valid against the declared
schema (JSON Schema 2020-12 over the document's components) — for the 2xx answers and for the
problem details alike. The `*Out` models document the API; this holds the API to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app import close_client, open_client
from tests.support.auth import bearer, write_keys_file
from tests.support.events import make_event
from tests.support.http import now, rfc
from tests.support.oracle import is_rfc3339, read_policy

CUSTOMER = "c-doc"
# jsonschema checks `date-time` only with an optional package; this is the contract's reading.
FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(lambda value: not isinstance(value, str) or is_rfc3339(value))
MAX_BODY = 64 * 1024


class Documented:
    """Calls the API and checks each answer against the operation's documented responses."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.seen: dict[tuple[str, str], set[int]] = {}

    async def __call__(
        self,
        method: str,
        template: str,
        *,
        path: dict[str, str] | None = None,
        key: str | None = "boss",
        **kwargs: Any,
    ) -> httpx.Response:
        url = template
        for name, value in (path or {}).items():
            url = url.replace("{" + name + "}", value)
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.update(bearer(key))
        response = await self.client.request(method, url, headers=headers, **kwargs)
        self.check(method, template, response)
        return response

    def check(self, method: str, template: str, response: httpx.Response) -> None:
        operation = self.document["paths"][template][method.lower()]
        status = str(response.status_code)
        where = (method, template, status, response.text[:500])
        assert status in operation["responses"], where
        self.seen.setdefault((method, template), set()).add(response.status_code)
        content = operation["responses"][status].get("content", {})
        if not content:
            assert response.content == b"", where
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, (media, *where)
        if not media.endswith("json"):
            return
        schema = {**content[media]["schema"], "components": self.document["components"]}
        errors = sorted(
            Draft202012Validator(schema, format_checker=FORMATS).iter_errors(response.json()),
            key=lambda e: list(e.absolute_path),
        )
        assert not errors, [(list(e.absolute_path), e.message) for e in errors[:5]] + [where]


@pytest.fixture
async def api(clean: AsyncEngine, database_url: str, tmp_path: Path) -> AsyncIterator[Documented]:
    client, lifespan = await open_client(
        database_url,
        auth="enabled",
        api_keys_file=write_keys_file(directory=tmp_path),
        max_body_bytes=MAX_BODY,
    )
    try:
        document = (await client.get("/openapi.json")).json()
        yield Documented(client, document)
    finally:
        await close_client(client, lifespan)


async def test_every_operation_answers_what_its_document_declares(api: Documented) -> None:
    customer = {"customer_id": CUSTOMER}
    nobody = {"customer_id": "nobody"}
    event = make_event(id="d1", subject=CUSTOMER, type="cancellation.requested")
    too_big = b"[" + b" " * MAX_BODY + b"]"

    # Ingest: one, a batch, and every problem it documents short of a database outage.
    assert (await api("POST", "/v1/events", json=event)).status_code == 200
    batch = [make_event(id=f"d{i}", subject=CUSTOMER, type="sla.breached") for i in (2, 3)]
    batch.append({"specversion": "1.0", "id": "bad"})
    assert (await api("POST", "/v1/events", json=batch)).status_code == 200
    assert (await api("POST", "/v1/events", json={**event, "type": "x"})).status_code == 409
    assert (await api("POST", "/v1/events", json={"id": 1})).status_code == 422
    assert (await api("POST", "/v1/events", key=None, json=event)).status_code == 401
    assert (await api("POST", "/v1/events", key="reader", json=event)).status_code == 403
    headers = {"content-type": "application/json"}
    assert (await api("POST", "/v1/events", content=too_big, headers=headers)).status_code == 413
    text = {"content-type": "text/plain"}
    assert (await api("POST", "/v1/events", content=b"{}", headers=text)).status_code == 415

    # The customer's reads: found, never seen, and a bad parameter each.
    past = rfc(now() - timedelta(hours=1))
    reads: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/v1/customers/{customer_id}", {}, {"customer_id": "a%00b"}),
        ("/v1/customers/{customer_id}/balance", {"at": past}, {"at": "yesterday"}),
        ("/v1/customers/{customer_id}/ledger", {"limit": "2"}, {"cursor": "!"}),
        ("/v1/customers/{customer_id}/drivers", {"since": past}, {"since": "x"}),
        ("/v1/customers/{customer_id}/history", {"points": "5"}, {"points": "1"}),
    ]
    for template, good, bad in reads:
        assert (await api("GET", template, path=customer, params=good)).status_code == 200
        assert (await api("GET", template, path=nobody, params=good)).status_code == 404
        if "customer_id" in bad:
            response = await api("GET", template, path=bad)
        else:
            response = await api("GET", template, path=customer, params=bad)
        assert response.status_code == 422
        assert (await api("GET", template, path=customer, key=None)).status_code == 401
    ledger = await api("GET", "/v1/customers/{customer_id}/ledger", path=customer)
    assert ledger.json()["items"], "the ledger has entries to validate"

    # Segments.
    put = "/v1/customers/{customer_id}"
    assert (await api("PUT", put, path=customer, json={"segment": "enterprise"})).status_code == 200
    assert (await api("PUT", put, path=customer, json={"segment": "nope"})).status_code == 422
    assert (await api("PUT", put, path=customer, key="reader", json={})).status_code == 403

    # Lists: the at-risk list and the alert feed, with something in them.
    at_risk = await api("GET", "/v1/at-risk")
    assert at_risk.status_code == 200
    assert at_risk.json()["items"], "an at-risk account to validate"
    assert (await api("GET", "/v1/at-risk", params={"limit": "0"})).status_code == 422
    alerts = await api("GET", "/v1/alerts")
    assert alerts.status_code == 200
    assert alerts.json()["items"], "an alert to validate"
    assert (await api("GET", "/v1/alerts", params={"limit": "1001"})).status_code == 422

    # The policy and the what-if.
    assert (await api("GET", "/v1/policy")).status_code == 200
    assert (await api("GET", "/v1/policy", key=None)).status_code == 401
    candidate = {**read_policy(), "version": "candidate", "half_life_days": 30}
    simulated = await api("POST", "/v1/policy/simulate", json=candidate)
    assert simulated.status_code == 200
    assert simulated.json()["movers"], "a mover to validate"
    bad_policy = {**candidate, "half_life_days": -1}
    assert (await api("POST", "/v1/policy/simulate", json=bad_policy)).status_code == 422
    assert (
        await api("POST", "/v1/policy/simulate", key="reader", json=candidate)
    ).status_code == 403

    # Webhooks: created (secret returned once), replaced, listed, removed, and problems.
    hook = {"name": "w1"}
    url = {"url": "https://example.invalid/hook"}
    assert (await api("PUT", "/v1/webhooks/{name}", path=hook, json=url)).status_code == 201
    assert (await api("PUT", "/v1/webhooks/{name}", path=hook, json=url)).status_code == 200
    bad_hook = {"url": "not a url", "kinds": ["nope"]}
    assert (await api("PUT", "/v1/webhooks/{name}", path=hook, json=bad_hook)).status_code == 422
    listed = await api("GET", "/v1/webhooks")
    assert listed.status_code == 200
    assert listed.json()["items"], "a webhook to validate"
    assert (await api("GET", "/v1/webhooks", key=None)).status_code == 401
    assert (await api("DELETE", "/v1/webhooks/{name}", path=hook)).status_code == 204
    assert (await api("DELETE", "/v1/webhooks/{name}", path=hook)).status_code == 404

    # Operations.
    assert (await api("GET", "/healthz", key=None)).status_code == 200
    assert (await api("GET", "/readyz", key=None)).status_code == 200
    assert (await api("GET", "/metrics", key="prometheus")).status_code == 200
    assert (await api("GET", "/metrics", key=None)).status_code == 401
    assert (await api("GET", "/metrics", key="reader")).status_code == 403

    # Every operation of the document answered a 2xx, and every one that can fail with a 4xx
    # here answered one too: nothing in the document went unchecked.
    operations = {
        (method.upper(), template)
        for template, item in api.document["paths"].items()
        for method in item
    }
    assert set(api.seen) == operations, operations ^ set(api.seen)
    for operation, statuses in api.seen.items():
        assert any(200 <= s < 300 for s in statuses), operation
        if operation[1] not in ("/healthz", "/readyz"):
            assert any(400 <= s < 500 for s in statuses), operation


async def test_the_check_fails_a_body_that_breaks_its_model(api: Documented) -> None:
    """The check above can fail: a missing member, a wrong type, a time without an offset."""
    good = {"customer_id": "c", "at": "2026-11-23T12:00:00Z", "balance": 1.5}
    template = "/v1/customers/{customer_id}/balance"
    request = httpx.Request("GET", "http://relbank/v1/customers/c/balance")
    api.check("GET", template, httpx.Response(200, json=good, request=request))
    for bad in (
        {"customer_id": "c", "at": "2026-11-23T12:00:00Z"},
        {**good, "balance": "1.5"},
        {**good, "at": "2026-11-23T12:00:00"},
    ):
        with pytest.raises(AssertionError):
            api.check("GET", template, httpx.Response(200, json=bad, request=request))
    with pytest.raises(AssertionError):
        api.check("GET", template, httpx.Response(418, json=good, request=request))
