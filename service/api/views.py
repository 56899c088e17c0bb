"""JSON shapes of the read API, and the opaque cursors it pages with."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from service.api.problems import PROBLEM_JSON, Problem
from service.domain.envelope import InvalidEvent, parse_time
from service.domain.ledger import Account
from service.domain.policy import Policy

T = TypeVar("T")


def json_bytes(content: Any) -> bytes:
    """JSON by orjson: datetimes as RFC 3339 (UTC as `Z`), no NaN."""
    return orjson.dumps(content, option=orjson.OPT_UTC_Z)


class JSONBody(JSONResponse):
    """JSON rendered by `json_bytes`."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc(value: datetime | None) -> datetime | None:
    """`value` in UTC, for `json_bytes` to write: orjson writes a datetime in a tenth of the time
    `rfc3339` takes, which counts in a page of a hundred accounts."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def customer_view(account: Account, policy: Policy, now: datetime) -> dict[str, Any]:
    thresholds = account.thresholds(policy)
    return {
        "customer_id": account.customer_id,
        "segment": account.segment,
        "balance": account.balance(now, policy),
        "status": account.status,
        "status_since": utc(account.status_since),
        "thresholds": {
            "at_risk_below": thresholds.at_risk_below,
            "recover_at_or_above": thresholds.recover_at_or_above,
        },
        "opened_at": utc(account.opened_at),
        "last_event_at": utc(account.last_event_at),
        "entries": account.entries,
        "next_transition_at": utc(account.next_transition_at),
        "policy_version": policy.version,
    }


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str, parse: Callable[[Any], T]) -> T:
    """The key an opaque cursor carries, as `parse` reads it; 422 for anything else."""
    try:
        return parse(orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))))
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, InvalidEvent):
        raise Problem(422, "`cursor` is not a cursor this API handed out") from None


def query_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except InvalidEvent as exc:
        hint = ""
        if " " in value.strip():
            hint = " (a `+` in a query string must be sent as %2B: unencoded, it means a space)"
        raise Problem(
            422,
            f"`{name}` must be an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z{hint}",
            reason=exc.reason.value,
        ) from None


# Response shapes, for the OpenAPI document only: handlers render JSON directly with orjson.
class ThresholdsOut(BaseModel):
    at_risk_below: float
    recover_at_or_above: float


class CustomerOut(BaseModel):
    customer_id: str
    segment: str | None
    balance: float = Field(description="B(now), decayed to the moment of the request.")
    status: Literal["ok", "at_risk"]
    status_since: datetime
    thresholds: ThresholdsOut
    opened_at: datetime
    last_event_at: datetime
    entries: int
    next_transition_at: datetime | None = Field(
        description="When decay alone will cross the next threshold; null if it never will."
    )
    policy_version: str


class EventResultOut(BaseModel):
    source: str | None
    id: str | None
    outcome: Literal["applied", "duplicate", "unweighted", "rejected", "conflict"]
    customer_id: str | None
    balance: float | None
    reason: str | None = Field(default=None, description="Reason code when rejected/conflict.")
    detail: str | None = None


class BatchResultsOut(BaseModel):
    results: list[EventResultOut] = Field(description="One result per input, in order.")


class BalanceOut(BaseModel):
    customer_id: str
    at: datetime
    balance: float


class LedgerEntryOut(BaseModel):
    source: str
    id: str
    type: str
    pillar: str | None
    amount: float
    effective_at: datetime
    recorded_at: datetime
    policy_version: str
    outcome: Literal["applied", "unweighted"]
    reason: str | None


class LedgerPageOut(BaseModel):
    items: list[LedgerEntryOut]
    next_cursor: str | None


class DriverTotalsOut(BaseModel):
    credits: float
    debits: float
    net: float
    entries: int


class PillarDriverOut(DriverTotalsOut):
    pillar: str | None


class TypeDriverOut(DriverTotalsOut):
    type: str
    pillar: str | None


class DriversOut(DriverTotalsOut):
    customer_id: str
    since: datetime | None
    by_pillar: list[PillarDriverOut]
    by_type: list[TypeDriverOut]


class AtRiskPageOut(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None


class CauseOut(BaseModel):
    source: str
    id: str


class AlertOut(BaseModel):
    alert_id: int
    customer_id: str
    kind: Literal["at_risk", "recovered"]
    balance: float
    threshold: float
    at: datetime
    cause: CauseOut | Literal["decay"]


class AlertsPageOut(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(
        description="The `after` for the next page; null when caught up."
    )


class FieldErrorOut(BaseModel):
    location: str = Field(description="Where: `body.segment`, `query.limit`, `path.name`, ...")
    message: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details; some problems carry more members."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    reason: str | None = Field(default=None, description="A reason code, where there is one.")
    errors: list[FieldErrorOut] | None = Field(
        default=None, description="A request that fails validation (422): each part that is wrong."
    )
    known_segments: list[str] | None = Field(
        default=None, description="An unknown segment (422): the segments of the active policy."
    )
    components: dict[str, str] | None = Field(
        default=None, description="`/readyz` (503): each dependency that is down, and why."
    )
    request_id: str | None = Field(
        default=None, description="A 500 or 503: the id the server log has the failure under."
    )


PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemOut"}
# Any operation may meet these: the database unavailable, or a fault of ours.
ALWAYS = (500, 503)


def problem_responses(*errors: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for problem-details errors (the schema is in the components)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*errors, *ALWAYS}):
        responses[status] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
    if 503 in responses:
        responses[503]["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return responses


def documented(model: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its 200 shape and its problem-details errors."""
    return {200: {"model": model}, **problem_responses(*errors)}


class ReadyOut(BaseModel):
    status: Literal["ready"]


READYZ_RESPONSES = documented(ReadyOut)
READYZ_RESPONSES[503] = {
    **READYZ_RESPONSES[503],
    "description": "Not ready: `components` names each dependency that is down, and why.",
}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The Prometheus text exposition format."},
    **problem_responses(401, 403),
}
