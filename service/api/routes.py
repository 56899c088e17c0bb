"""The HTTP API of README."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from service import metrics, pipeline
from service.api import inputs
from service.api.auth import require
from service.api.context import runtime
from service.api.edge import CUSTOMER_PATH
from service.api.problems import Problem
from service.api.views import (
    AlertsPageOut,
    AtRiskPageOut,
    BalanceOut,
    CustomerOut,
    DriversOut,
    EventResultOut,
    JSONBody,
    LedgerPageOut,
    customer_view,
    decode_cursor,
    documented,
    encode_cursor,
    query_time,
    rfc3339,
)
from service.domain.envelope import Event, InvalidEvent, Reason, decode_json
from service.domain.policy import Policy
from service.runtime import Runtime
from service.wire import alert_item

MAX_BATCH = 1000
router = APIRouter()
Rt = Annotated[Runtime, Depends(runtime)]
Limit = Annotated[int, Query(ge=1, le=1000)]
CustomerId = Annotated[str, Depends(inputs.customer_id)]

_JSON_TYPES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}


@router.post(
    "/v1/events",
    operation_id="post_events",
    dependencies=[Depends(require("events:write"))],
    summary="Post one CloudEvent, or a batch of 1-1000 as a JSON array",
    responses={
        **documented(EventResultOut, 401, 403, 409, 413, 415, 422),
        200: {
            "description": "One event: its result. A batch: `{results}`, one per input, in order.",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EventResultOut"},
                            {"$ref": "#/components/schemas/BatchResultsOut"},
                        ]
                    }
                }
            },
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/CloudEvent"},
                            {
                                "type": "array",
                                # Anything goes: an invalid item comes back `rejected`.
                                "items": {
                                    "anyOf": [{"$ref": "#/components/schemas/CloudEvent"}, {}]
                                },
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                            },
                        ]
                    }
                }
                for media in sorted(_JSON_TYPES)
            },
        }
    },
)
async def post_events(request: Request, rt: Rt) -> JSONBody:
    return await ingest(request, rt)


async def ingest(request: Request, rt: Runtime) -> JSONBody:
    """POST /v1/events once its key is checked (also called by `hotpath.HotPaths`)."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media_type.lower() not in _JSON_TYPES:
        raise Problem(415, f"content type {media_type!r} is not one of {sorted(_JSON_TYPES)}")
    raw = await request.body()  # at most RELBANK_MAX_BODY_BYTES (edge.BodyLimit)
    received_at = datetime.now(UTC)
    try:
        body = decode_json(raw)
    except InvalidEvent as exc:
        metrics.count_results("http", ["rejected"])
        raise Problem(422, exc.detail, reason=exc.reason.value) from None
    skew = rt.settings.max_future_skew
    if isinstance(body, list):
        if not 1 <= len(body) <= MAX_BATCH:
            raise Problem(422, f"a batch holds 1 to {MAX_BATCH} events; this one has {len(body)}")
        decoded = [
            pipeline.decode(item, received_at=received_at, max_future_skew=skew) for item in body
        ]
        results = await _apply(rt, decoded)
        return JSONBody({"results": [r.as_json() for r in results]})
    decoded_one = pipeline.decode(body, received_at=received_at, max_future_skew=skew)
    [result] = await _apply(rt, [decoded_one])
    if result.outcome == "rejected":
        raise Problem(422, result.detail or "invalid event", reason=result.reason)
    if result.outcome == "conflict":
        raise Problem(409, result.detail or "conflict", reason=Reason.CONFLICT.value)
    return JSONBody(result.as_json())


async def _apply(rt: Runtime, decoded: list[Event | pipeline.Result]) -> list[pipeline.Result]:
    valid = [d for d in decoded if isinstance(d, Event)]
    applied = (await rt.app.ingest(valid, path="http")).results if valid else []
    it = iter(applied)
    results = [next(it) if isinstance(d, Event) else d for d in decoded]
    metrics.count_results("http", [r.outcome for r in results if r.outcome == "rejected"])
    return results


def never_seen(customer_id: str) -> Problem:
    return Problem(404, f"customer {customer_id!r} has never been seen")


@router.get(
    CUSTOMER_PATH + "/balance",
    operation_id="get_balance",
    dependencies=[Depends(require("read"))],
    responses=documented(BalanceOut, 401, 403, 404, 422),
)
async def get_balance(customer_id: CustomerId, rt: Rt, at: inputs.Time = None) -> JSONBody:
    when = query_time(at, "at") or datetime.now(UTC)
    balance = await rt.app.balance_at(customer_id, when)
    if balance is None:
        raise never_seen(customer_id)
    return JSONBody({"customer_id": customer_id, "at": rfc3339(when), "balance": balance})


@router.get(
    CUSTOMER_PATH + "/ledger",
    operation_id="get_ledger",
    dependencies=[Depends(require("read"))],
    responses=documented(LedgerPageOut, 401, 403, 404, 422),
)
async def get_ledger(
    customer_id: CustomerId, rt: Rt, limit: Limit = 100, cursor: str | None = None
) -> JSONBody:
    """Entries newest first by effective time (then by entry id), as a bank statement reads;
    keyset paging visits every entry exactly once."""
    after = None
    if cursor:
        after = decode_cursor(cursor, inputs.ledger_key)
    page = await rt.app.ledger_page(customer_id, limit=limit, after=after)
    if page is None:
        raise never_seen(customer_id)
    items, last = page
    for item in items:
        item["effective_at"] = rfc3339(item["effective_at"])
        item["recorded_at"] = rfc3339(item["recorded_at"])
    next_cursor = encode_cursor([last.effective_at.isoformat(), last.entry_id]) if last else None
    return JSONBody({"items": items, "next_cursor": next_cursor})


def _totals() -> dict[str, Any]:
    return {"credits": 0.0, "debits": 0.0, "net": 0.0, "entries": 0}


@router.get(
    CUSTOMER_PATH + "/drivers",
    operation_id="get_drivers",
    dependencies=[Depends(require("read"))],
    responses=documented(DriversOut, 401, 403, 404, 422),
)
async def get_drivers(customer_id: CustomerId, rt: Rt, since: inputs.Time = None) -> JSONBody:
    """What moved the balance since `since` (default: since the account opened): amounts as
    booked, before decay, credits and debits apart, per pillar and per type."""
    when = query_time(since, "since")
    rows = await rt.app.drivers(customer_id, when)
    if rows is None:
        raise never_seen(customer_id)
    total = _totals()
    pillars: dict[str, dict[str, Any]] = {}
    types: dict[str, dict[str, Any]] = {}
    for pillar, type_, credits, debits, count in rows:
        for bucket in (
            total,
            pillars.setdefault(pillar or "none", {"pillar": pillar, **_totals()}),
            types.setdefault(type_, {"type": type_, "pillar": pillar, **_totals()}),
        ):
            bucket["credits"] += credits
            bucket["debits"] += debits
            bucket["net"] += credits + debits
            bucket["entries"] += count

    def ranked(buckets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            buckets.values(), key=lambda b: (-abs(b["net"]), str(b.get("type") or b["pillar"]))
        )

    return JSONBody(
        {
            "customer_id": customer_id,
            "since": rfc3339(when),
            **total,
            "by_pillar": ranked(pillars),
            "by_type": ranked(types),
        }
    )


@router.get(
    CUSTOMER_PATH,
    operation_id="get_customer",
    dependencies=[Depends(require("read"))],
    responses=documented(CustomerOut, 401, 403, 404, 422),
)
async def get_customer(customer_id: CustomerId, rt: Rt) -> JSONBody:
    account = await rt.app.account(customer_id)
    if account is None:
        raise never_seen(customer_id)
    return JSONBody(customer_view(account, rt.policy, datetime.now(UTC)))


class SegmentChange(BaseModel):
    segment: str | None = Field(description="A segment of the active policy, or null for none.")


@router.put(
    CUSTOMER_PATH,
    operation_id="put_customer",
    dependencies=[Depends(require("admin"))],
    responses=documented(CustomerOut, 400, 401, 403, 413, 422),
)
async def put_customer(customer_id: CustomerId, change: SegmentChange, rt: Rt) -> JSONBody:
    inputs.known_segment(change.segment, rt.policy)
    account, _ = await rt.app.change_segment(customer_id, change.segment)
    return JSONBody(customer_view(account, rt.policy, datetime.now(UTC)))


@router.get(
    "/v1/at-risk",
    operation_id="get_at_risk",
    dependencies=[Depends(require("read"))],
    responses=documented(AtRiskPageOut, 401, 403, 422),
)
async def get_at_risk(
    rt: Rt, segment: str | None = None, limit: Limit = 100, cursor: str | None = None
) -> JSONBody:
    inputs.known_segment(segment, rt.policy)
    after = None
    if cursor:
        after = decode_cursor(cursor, inputs.rank_key)
    found, last = await rt.app.at_risk_page(segment=segment, limit=limit, after=after)
    now = datetime.now(UTC)
    return JSONBody(
        {
            "items": [customer_view(a, rt.policy, now) for a in found],
            "next_cursor": encode_cursor(list(last)) if last else None,
        }
    )


@router.get(
    "/v1/alerts",
    operation_id="get_alerts",
    dependencies=[Depends(require("read"))],
    responses=documented(AlertsPageOut, 401, 403, 422),
)
async def get_alerts(
    rt: Rt,
    after: Annotated[int | None, Query(ge=0, le=inputs.BIGINT_MAX)] = None,
    cursor: Annotated[str | None, Query(description="The same as `after`.")] = None,
    limit: Limit = 100,
) -> JSONBody:
    """Alerts oldest first. Ids become visible in id order, so polling with `after=` (or
    `cursor=`) set to the last id seen never skips one; `next_cursor` is that id while a page
    comes back full."""
    position = inputs.alert_position(after, cursor)
    page = await rt.app.alerts_after(after=position, limit=limit)
    items = [alert_item(i, a) for i, a in page]
    next_cursor = str(items[-1]["alert_id"]) if len(items) == limit else None
    return JSONBody({"items": items, "next_cursor": next_cursor})


@router.get(
    "/v1/policy",
    operation_id="get_policy",
    dependencies=[Depends(require("read"))],
    responses=documented(Policy, 401, 403),
)
async def get_policy(rt: Rt) -> JSONBody:
    return JSONBody(orjson.loads(rt.policy.model_dump_json()))
