"""Speaking to the API: times as it prints them, problem checks, paging to the end.

The arithmetic to check answers against is `tests.support.oracle`'s."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.support.events import make_event

PROBLEM_JSON = "application/problem+json"
DESIGN_CUSTOMER_KEYS = {
    "customer_id",
    "segment",
    "balance",
    "status",
    "status_since",
    "thresholds",
    "opened_at",
    "last_event_at",
    "entries",
    "next_transition_at",
    "policy_version",
}
LEDGER_KEYS = {
    "source",
    "id",
    "type",
    "pillar",
    "amount",
    "effective_at",
    "recorded_at",
    "policy_version",
    "outcome",
    "reason",
}


def rfc(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the API prints times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


def days_ago(*, days: float, base: datetime | None = None) -> datetime:
    return (base or now()) - timedelta(days=days)


def event_at(
    *,
    id: str,
    subject: str,
    at: datetime,
    type: str = "support.resolved_first_contact",
    source: str = "zendesk",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid envelope whose `time` is exactly `at`."""
    return make_event(id=id, subject=subject, type=type, source=source, time=rfc(at), data=data)


def forged_cursor(*, key: Any) -> str:
    """A cursor in the API's encoding (base64url JSON) around a key the API never handed out."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def assert_problem(response: httpx.Response, *, status: int) -> dict[str, Any]:
    """An RFC 9457 problem of `status`; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert media_type == PROBLEM_JSON, (media_type, response.text)
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert isinstance(body["type"], str), body
    assert body["type"], body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    return body


async def post_ok(client: httpx.AsyncClient, body: Any) -> dict[str, Any]:
    """POST /v1/events and insist on 200."""
    response = await client.post("/v1/events", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_ok(
    client: httpx.AsyncClient, path: str, *, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, (path, params, response.text)
    body: dict[str, Any] = response.json()
    return body


async def whole_ledger(
    client: httpx.AsyncClient, customer_id: str, *, limit: int = 1000
) -> list[dict[str, Any]]:
    """Every ledger entry of a customer, following cursors to the end."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(10_000):
        page = await get_ok(client, f"/v1/customers/{customer_id}/ledger", params=params)
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        params = {"limit": limit, "cursor": page["next_cursor"]}
    raise AssertionError("ledger paging never ended")


async def all_alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The whole alert feed, oldest first."""
    items: list[dict[str, Any]] = []
    after = 0
    for _ in range(10_000):
        page = await get_ok(client, "/v1/alerts", params={"after": after, "limit": 1000})
        items.extend(page["items"])
        if not page["items"]:
            return items
        after = page["items"][-1]["alert_id"]
    raise AssertionError("alert feed never ended")
