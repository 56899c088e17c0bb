"""Plain helpers for the API tests: an independent README oracle, times, problem checks.

The oracle below is written from README alone and does not import the service's arithmetic,
so a wrong formula in the service cannot hide behind the same wrong formula here.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.factories import make_event

HALF_LIFE_DAYS = 90.0
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


def oracle(
    entries: Iterable[tuple[float, datetime]],
    at: datetime,
    *,
    half_life_days: float | None = HALF_LIFE_DAYS,
) -> float:
    """B(t) = Σ over entries effective at or before t of amount · 2^(−(t − effective_at)/h)."""
    terms = []
    for amount, when in entries:
        if when > at:
            continue
        if half_life_days is None:
            terms.append(amount)
        else:
            days = (at - when) / timedelta(days=1)
            terms.append(amount * 2.0 ** (-days / half_life_days))
    return math.fsum(terms)


def close(actual: float, expected: float, *, rel: float = 1e-6) -> bool:
    """Equal to the contract's tolerance (relative 1e-6; an absolute floor for zero)."""
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-9)


def rfc(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the API prints times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{value!r} has no offset"
    return parsed


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
