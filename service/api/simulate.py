"""`POST /v1/policy/simulate`: what-if under a candidate policy, writing nothing (README)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from service.api.auth import require
from service.api.context import runtime
from service.api.problems import Problem
from service.api.views import JSONBody, documented
from service.domain.policy import PolicyError, parse_policy
from service.runtime import Runtime
from service.simulate import what_if_json

router = APIRouter()

_JSON = "application/json"
# A simulation holds a database snapshot and a connection for its whole run (about 40 s per
# million events): one at a time per instance, so an impatient client cannot pile them up.
MAX_SIMULATIONS = 1
RETRY_AFTER_SECONDS = 10
_YAML = ("application/yaml", "text/yaml", "application/x-yaml")


class MoverOut(BaseModel):
    customer_id: str
    balance_now: float = Field(description="B(at) as the account stands.")
    balance_simulated: float = Field(description="B(at) under the candidate policy.")
    status_now: Literal["ok", "at_risk"]
    status_simulated: Literal["ok", "at_risk"]


class SimulationOut(BaseModel):
    policy_version: str = Field(description="The candidate policy's version.")
    at: datetime = Field(description="The instant every balance and status is evaluated at.")
    events: int = Field(description="Events replayed from the event store.")
    accounts: int
    at_risk_now: int
    at_risk_simulated: int
    to_at_risk: int = Field(description="Accounts ok now and at risk under the candidate.")
    to_ok: int = Field(description="Accounts at risk now and ok under the candidate.")
    movers: list[MoverOut] = Field(
        description="Up to 100 accounts with the largest absolute balance change (changes "
        "within floating-point rounding left out), largest first."
    )


def _document(raw: bytes, media_type: str) -> Any:
    if media_type == _JSON:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Problem(422, f"policy: body is not valid JSON: {exc}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise Problem(422, f"policy: body is not valid YAML: {exc}") from None


@router.post(
    "/v1/policy/simulate",
    dependencies=[Depends(require("admin"))],
    responses=documented(SimulationOut, 401, 403, 413, 415, 422, 429),
    summary="What-if: replay the event store under a candidate policy, writing nothing",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"$ref": "#/components/schemas/Policy"}}
                for media in (_JSON, *_YAML)
            },
        }
    },
)
async def post_simulate(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> JSONBody:
    """The body is a policy document (JSON, or YAML as `application/yaml`). The whole event
    store is replayed under it in memory, in one read-only snapshot, and compared with the
    accounts as they stand; a simulated status starts from the current one and is evaluated
    once, as `relbank replay --policy` would, so simulating then replaying agree. One runs at a
    time per instance: another meanwhile is a `429` with `Retry-After`."""
    media_type = request.headers.get("content-type", _JSON).split(";")[0].strip().lower()
    if media_type not in (_JSON, *_YAML):
        raise Problem(415, f"content type {media_type!r} is not one of {[_JSON, *_YAML]}")
    raw = await request.body()  # at most RELBANK_MAX_BODY_BYTES (edge.BodyLimit)
    try:
        policy = parse_policy(_document(raw, media_type))
    except PolicyError as exc:
        raise Problem(422, str(exc)) from None
    if rt.simulations >= MAX_SIMULATIONS:
        raise Problem(
            429,
            "a simulation is already running on this instance; try again when it is done",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    rt.simulations += 1
    try:
        return JSONBody(what_if_json(await rt.app.simulate(policy)))
    finally:
        rt.simulations -= 1
