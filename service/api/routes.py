"""The HTTP API of DESIGN §5."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import metrics, pipeline
from service.api.auth import require
from service.api.context import Context, context
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
from service.domain.balance import balance_from_entries
from service.domain.envelope import Event, InvalidEvent, Reason, decode_json
from service.domain.ledger import Account
from service.domain.policy import Policy
from service.storage import reads
from service.storage.db import in_transaction

MAX_BATCH = 1000
_BIGINT_MAX = 2**63 - 1
router = APIRouter()
Ctx = Annotated[Context, Depends(context)]
Limit = Annotated[int, Query(ge=1, le=1000)]

_JSON_TYPES = {
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to be over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"request body is over the limit of {limit} bytes")
    return bytes(body)


@router.post(
    "/v1/events",
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
                                "items": {"$ref": "#/components/schemas/CloudEvent"},
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
async def post_events(request: Request, ctx: Ctx) -> JSONBody:
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media_type.lower() not in _JSON_TYPES:
        raise Problem(415, f"content type {media_type!r} is not one of {sorted(_JSON_TYPES)}")
    raw = await read_body(request, ctx.settings.max_body_bytes)
    received_at = datetime.now(UTC)
    try:
        body = decode_json(raw)
    except InvalidEvent as exc:
        metrics.count_results("http", ["rejected"])
        raise Problem(422, exc.detail, reason=exc.reason.value) from None
    skew = ctx.settings.max_future_skew
    if isinstance(body, list):
        if not 1 <= len(body) <= MAX_BATCH:
            raise Problem(422, f"a batch holds 1 to {MAX_BATCH} events; this one has {len(body)}")
        decoded = [
            pipeline.decode(item, received_at=received_at, max_future_skew=skew) for item in body
        ]
        results = await _apply(ctx, decoded)
        return JSONBody({"results": [r.as_json() for r in results]})
    decoded_one = pipeline.decode(
        body, received_at=received_at, max_future_skew=skew, encoded_size=len(raw)
    )
    [result] = await _apply(ctx, [decoded_one])
    if result.outcome == "rejected":
        raise Problem(422, result.detail or "invalid event", reason=result.reason)
    if result.outcome == "conflict":
        raise Problem(409, result.detail or "conflict", reason=Reason.CONFLICT.value)
    return JSONBody(result.as_json())


async def _apply(ctx: Context, decoded: list[Event | pipeline.Result]) -> list[pipeline.Result]:
    valid = [d for d in decoded if isinstance(d, Event)]
    applied_results: list[pipeline.Result] = []
    if valid:
        with metrics.APPLY_BATCH_SECONDS.time():

            async def work(conn: AsyncConnection) -> pipeline.Applied:
                return await pipeline.apply_batch(
                    conn,
                    valid,
                    policy=ctx.policy,
                    path="http",
                    alerts_topic=ctx.settings.alerts_topic,
                )

            applied = await in_transaction(ctx.engine, work)
        metrics.APPLY_BATCH_EVENTS.observe(len(valid))
        applied_results = applied.results
        metrics.count_alerts(applied.alert_kinds)
    it = iter(applied_results)
    results = [next(it) if isinstance(d, Event) else d for d in decoded]
    metrics.count_results("http", [r.outcome for r in results])
    return results


def _ledger_key(key: Any) -> reads.LedgerKey:
    after = reads.LedgerKey(datetime.fromisoformat(key[0]), int(key[1]))
    if after.effective_at.tzinfo is None or not 0 <= after.entry_id <= _BIGINT_MAX:
        raise ValueError("cursor out of range")
    return after


def _rank_key(key: Any) -> tuple[int, float, str]:
    after = (int(key[0]), float(key[1]), str(key[2]))
    if after[0] not in (-1, 0, 1) or not math.isfinite(after[1]):
        raise ValueError("cursor out of range")
    return after


async def _account_or_404(conn: AsyncConnection, customer_id: str) -> Account:
    account = await reads.account(conn, customer_id)
    if account is None:
        raise Problem(404, f"customer {customer_id!r} has never been seen")
    return account


@router.get(
    "/v1/customers/{customer_id:path}/balance",
    dependencies=[Depends(require("read"))],
    responses=documented(BalanceOut, 401, 403, 404, 422),
)
async def get_balance(
    customer_id: str, ctx: Ctx, at: Annotated[str | None, Query()] = None
) -> JSONBody:
    when = query_time(at, "at") or datetime.now(UTC)
    async with ctx.engine.connect() as conn:
        await _account_or_404(conn, customer_id)
        entries = await reads.entries_until(conn, customer_id, when)
    balance = balance_from_entries(entries, when, ctx.policy.half_life_days)
    return JSONBody({"customer_id": customer_id, "at": rfc3339(when), "balance": balance})


@router.get(
    "/v1/customers/{customer_id:path}/ledger",
    dependencies=[Depends(require("read"))],
    responses=documented(LedgerPageOut, 401, 403, 404, 422),
)
async def get_ledger(
    customer_id: str, ctx: Ctx, limit: Limit = 100, cursor: str | None = None
) -> JSONBody:
    """Entries newest first by effective time (then by entry id), as a bank statement reads;
    keyset paging visits every entry exactly once."""
    after = None
    if cursor:
        after = decode_cursor(cursor, _ledger_key)
    async with ctx.engine.connect() as conn:
        await _account_or_404(conn, customer_id)
        items, last = await reads.ledger_page(conn, customer_id, limit=limit, after=after)
    for item in items:
        item["effective_at"] = rfc3339(item["effective_at"])
        item["recorded_at"] = rfc3339(item["recorded_at"])
    next_cursor = encode_cursor([last.effective_at.isoformat(), last.entry_id]) if last else None
    return JSONBody({"items": items, "next_cursor": next_cursor})


def _totals() -> dict[str, Any]:
    return {"credits": 0.0, "debits": 0.0, "net": 0.0, "entries": 0}


@router.get(
    "/v1/customers/{customer_id:path}/drivers",
    dependencies=[Depends(require("read"))],
    responses=documented(DriversOut, 401, 403, 404, 422),
)
async def get_drivers(
    customer_id: str, ctx: Ctx, since: Annotated[str | None, Query()] = None
) -> JSONBody:
    """What moved the balance since `since` (default: since the account opened): amounts as
    booked, before decay, credits and debits apart, per pillar and per type."""
    when = query_time(since, "since")
    async with ctx.engine.connect() as conn:
        await _account_or_404(conn, customer_id)
        rows = await reads.drivers(conn, customer_id, when)
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


# Registered after the sub-resources: `{customer_id:path}` would also match `x/balance`.
@router.get(
    "/v1/customers/{customer_id:path}",
    dependencies=[Depends(require("read"))],
    responses=documented(CustomerOut, 401, 403, 404),
)
async def get_customer(customer_id: str, ctx: Ctx) -> JSONBody:
    async with ctx.engine.connect() as conn:
        account = await _account_or_404(conn, customer_id)
    return JSONBody(customer_view(account, ctx.policy, datetime.now(UTC)))


class SegmentChange(BaseModel):
    segment: str | None = Field(description="A segment of the active policy, or null for none.")


@router.put(
    "/v1/customers/{customer_id:path}",
    dependencies=[Depends(require("admin"))],
    responses=documented(CustomerOut, 401, 403, 422),
)
async def put_customer(customer_id: str, change: SegmentChange, ctx: Ctx) -> JSONBody:
    if change.segment is not None and change.segment not in ctx.policy.segments:
        raise Problem(
            422,
            f"segment {change.segment!r} is not in policy {ctx.policy.version}; "
            f"known: {sorted(ctx.policy.segments)}",
        )
    if not 1 <= len(customer_id) <= 128 or any(
        ord(c) < 32 or 127 <= ord(c) < 160 for c in customer_id
    ):
        raise Problem(422, "customer id must be 1-128 characters without control characters")

    async def work(conn: AsyncConnection) -> tuple[Account, list[str]]:
        return await pipeline.change_segment(
            conn,
            customer_id,
            change.segment,
            policy=ctx.policy,
            alerts_topic=ctx.settings.alerts_topic,
        )

    account, alert_kinds = await in_transaction(ctx.engine, work)
    metrics.count_alerts(alert_kinds)
    return JSONBody(customer_view(account, ctx.policy, datetime.now(UTC)))


@router.get(
    "/v1/at-risk",
    dependencies=[Depends(require("read"))],
    responses=documented(AtRiskPageOut, 401, 403, 422),
)
async def get_at_risk(
    ctx: Ctx, segment: str | None = None, limit: Limit = 100, cursor: str | None = None
) -> JSONBody:
    after = None
    if cursor:
        after = decode_cursor(cursor, _rank_key)
    async with ctx.engine.connect() as conn:
        found, last = await reads.at_risk_page(conn, segment=segment, limit=limit, after=after)
    now = datetime.now(UTC)
    return JSONBody(
        {
            "items": [customer_view(a, ctx.policy, now) for a in found],
            "next_cursor": encode_cursor(list(last)) if last else None,
        }
    )


@router.get(
    "/v1/alerts",
    dependencies=[Depends(require("read"))],
    responses=documented(AlertsPageOut, 401, 403, 422),
)
async def get_alerts(
    ctx: Ctx, after: Annotated[int, Query(ge=0, le=_BIGINT_MAX)] = 0, limit: Limit = 100
) -> JSONBody:
    """Alerts oldest first. Ids become visible in id order, so polling with `after=` set to the
    last id seen never skips one; `next_cursor` is that `after` while a page comes back full."""
    async with ctx.engine.connect() as conn:
        items = await reads.alerts_after(conn, after=after, limit=limit)
    next_cursor = str(items[-1]["alert_id"]) if len(items) == limit else None
    return JSONBody({"items": items, "next_cursor": next_cursor})


@router.get(
    "/v1/policy",
    dependencies=[Depends(require("read"))],
    responses=documented(Policy, 401, 403),
)
async def get_policy(ctx: Ctx) -> JSONBody:
    return JSONBody(orjson.loads(ctx.policy.model_dump_json()))
