"""JSON shapes of the read API, and the opaque cursors it pages with."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from service.api.problems import Problem
from service.domain.envelope import InvalidEvent, parse_time
from service.domain.ledger import Account
from service.domain.policy import Policy


class JSONBody(Response):
    """JSON rendered by orjson (RFC 3339 times, no NaN)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def customer_view(account: Account, policy: Policy, now: datetime) -> dict[str, Any]:
    thresholds = account.thresholds(policy)
    return {
        "customer_id": account.customer_id,
        "segment": account.segment,
        "balance": account.balance(now, policy),
        "status": account.status,
        "status_since": rfc3339(account.status_since),
        "thresholds": {
            "at_risk_below": thresholds.at_risk_below,
            "recover_at_or_above": thresholds.recover_at_or_above,
        },
        "opened_at": rfc3339(account.opened_at),
        "last_event_at": rfc3339(account.last_event_at),
        "entries": account.entries,
        "next_transition_at": rfc3339(account.next_transition_at),
        "policy_version": policy.version,
    }


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str, name: str = "cursor") -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise Problem(422, f"`{name}` is not a cursor this API handed out") from None


def query_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except InvalidEvent:
        raise Problem(
            422, f"`{name}` must be an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z"
        ) from None
