"""Webhook registration (README): `PUT`, `GET`, `DELETE /v1/webhooks`; admin only."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from service.api.auth import require
from service.api.context import runtime
from service.api.problems import Problem
from service.api.views import JSONBody, documented, rfc3339
from service.runtime import Runtime
from service.sinks import SECRET_PREFIX
from service.storage.webhooks import WebhookState

router = APIRouter(tags=["webhooks"], dependencies=[Depends(require("admin"))])
Rt = Annotated[Runtime, Depends(runtime)]
Name = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="1-64 of a-z, 0-9, `-`, `_`, starting with a letter or digit.",
    ),
]
Kind = Literal["at_risk", "recovered"]
KINDS: list[Kind] = ["at_risk", "recovered"]
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
MAX_URL = 2048


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL, description="An http:// or https:// URL to POST to.")
    secret: str | None = Field(
        default=None,
        description=f"`{SECRET_PREFIX}` and the base64 of {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} "
        "bytes. Absent: a new webhook gets a generated one (answered once), a changed one keeps "
        "its own.",
    )
    kinds: list[Kind] = Field(
        default_factory=lambda: list(KINDS), min_length=1, description="The alerts it wants."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("secret")
    @classmethod
    def _standard_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        encoded = value.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if (
            not value.startswith(SECRET_PREFIX)
            or not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES
        ):
            raise ValueError(
                f"must be {SECRET_PREFIX!r} and the base64 of "
                f"{SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes"
            )
        return value


class DeliveryOut(BaseModel):
    delivered_through: int = Field(
        description="The alert id delivered (or given up on) last; a new webhook starts at the "
        "newest alert."
    )
    backlog: int = Field(description="Alerts of its kinds not delivered yet.")
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failing_since: datetime | None = Field(description="Set while deliveries are failing.")
    attempts: int = Field(description="Failed attempts at the next alert.")
    next_attempt_at: datetime | None
    given_up: int = Field(description="Alerts given up on after failing too long.")
    last_given_up_at: datetime | None


class WebhookOut(BaseModel):
    name: str
    url: str = Field(description="As registered, a password in it masked.")
    kinds: list[Kind]
    created_at: datetime
    updated_at: datetime
    delivery: DeliveryOut
    secret: str | None = Field(
        default=None, description="Only in the answer that generated it; never shown again."
    )


class WebhooksPageOut(BaseModel):
    items: list[WebhookOut]
    next_cursor: None = None


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def webhook_view(state: WebhookState) -> dict[str, Any]:
    hook, cursor = state.webhook, state.cursor
    return {
        "name": hook.name,
        "url": _masked(hook.url),
        "kinds": list(hook.kinds),
        "created_at": rfc3339(hook.created_at),
        "updated_at": rfc3339(hook.updated_at),
        "delivery": {
            "delivered_through": cursor.last_alert_id,
            "backlog": state.backlog,
            "last_success_at": rfc3339(cursor.last_success_at),
            "last_error": cursor.last_error,
            "last_error_at": rfc3339(cursor.last_error_at),
            "failing_since": rfc3339(cursor.failing_since),
            "attempts": cursor.attempts,
            "next_attempt_at": rfc3339(cursor.next_attempt_at),
            "given_up": cursor.given_up,
            "last_given_up_at": rfc3339(cursor.last_given_up_at),
        },
    }


@router.put(
    "/v1/webhooks/{name}",
    responses={**documented(WebhookOut, 400, 401, 403, 413, 422), 201: {"model": WebhookOut}},
)
async def put_webhook(name: Name, body: WebhookIn, rt: Rt) -> JSONBody:
    """Deliver alerts to `url`: `201` for a new webhook (with its generated `secret` when none
    was given), `200` for a changed one, which keeps its place in the alerts and retries at
    once."""
    kinds = [k for k in KINDS if k in body.kinds]
    put = await rt.app.sinks.put_webhook(name, url=body.url, secret=body.secret, kinds=kinds)
    view = webhook_view(put.state)
    if put.secret is not None:
        view["secret"] = put.secret
    return JSONBody(view, status_code=201 if put.created else 200)


@router.get("/v1/webhooks", responses=documented(WebhooksPageOut, 401, 403))
async def get_webhooks(rt: Rt) -> JSONBody:
    """Every webhook, by name, with its delivery state (never its secret)."""
    items = [webhook_view(state) for state in await rt.app.sinks.webhooks()]
    return JSONBody({"items": items, "next_cursor": None})


@router.delete(
    "/v1/webhooks/{name}",
    status_code=204,
    responses={
        204: {"description": "Removed, with its delivery state."},
        **{k: v for k, v in documented(WebhookOut, 401, 403, 404).items() if k != 200},
    },
)
async def delete_webhook(name: Name, rt: Rt) -> Response:
    if not await rt.app.sinks.delete_webhook(name):
        raise Problem(404, f"no webhook named {name!r}")
    return Response(status_code=204)
