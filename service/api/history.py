"""`GET /v1/customers/{id}/history`: the balance over time, for charts (README).

The customer id is one percent-encoded path segment, routed on the raw path (`service.api.edge`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from service.api.auth import require
from service.api.context import runtime
from service.api.edge import CUSTOMER_PATH
from service.api.problems import Problem
from service.api.views import JSONBody, documented, query_time, rfc3339
from service.runtime import Runtime

router = APIRouter()


class HistoryPointOut(BaseModel):
    at: datetime
    balance: float


class HistoryOut(BaseModel):
    customer_id: str
    items: list[HistoryPointOut] = Field(
        description="B(t) at evenly spaced instants, oldest first."
    )


@router.get(
    CUSTOMER_PATH + "/history",
    dependencies=[Depends(require("read"))],
    responses=documented(HistoryOut, 401, 403, 404, 422),
    summary="The balance over time, for charts",
)
async def get_history(
    customer_id: str,
    rt: Annotated[Runtime, Depends(runtime)],
    from_: Annotated[
        str | None,
        Query(alias="from", description="RFC 3339; default: when the account opened."),
    ] = None,
    to: Annotated[str | None, Query(description="RFC 3339; default: now.")] = None,
    points: Annotated[int, Query(ge=2, le=1000, description="Instants, both ends included.")] = 100,
) -> JSONBody:
    """B(t) from the ledger at `points` evenly spaced instants from `from` to `to`, both
    included: one query for the entries, one pass over them."""
    start, end = query_time(from_, "from"), query_time(to, "to") or datetime.now(UTC)
    if start is not None and start > end:
        raise Problem(422, f"`from` ({rfc3339(start)}) is after `to` ({rfc3339(end)})")
    series = await rt.app.history(customer_id, start=start, end=end, points=points)
    if series is None:
        raise Problem(404, f"customer {customer_id!r} has never been seen")
    return JSONBody(
        {
            "customer_id": customer_id,
            "items": [{"at": rfc3339(t), "balance": b} for t, b in series],
        }
    )
