"""Pure-ASGI middleware at the HTTP edge: the header cap, raw-path routing of customer ids, and
the boundary that turns any failure into problem details (README)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from sqlalchemy.exc import DBAPIError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import send_problem
from service.errors import summary
from service.logs import REQUEST_ID
from service.storage.db import refused_data, unavailable

log = logging.getLogger("relbank.http")

MAX_HEADER_BYTES = 16 * 1024
RETRY_AFTER_SECONDS = 2
CUSTOMERS_PREFIX = "/v1/customers/"
# A customer id is one path segment, percent-decoded by the `segment` convertor below.
CUSTOMER_PATH = CUSTOMERS_PREFIX + "{customer_id:segment}"


class SegmentConvertor(Convertor[str]):
    """One percent-encoded path segment of the raw path, decoded as UTF-8. Bytes that are not
    UTF-8 survive as lone surrogates, which the id check then refuses."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8", "surrogateescape")

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("segment", SegmentConvertor())


class RawCustomerPaths:
    """Route `/v1/customers/...` on the raw path, so `%2F` inside an id is not a separator:
    `/v1/customers/acme%2Fledger` is the customer `acme/ledger`, `/v1/customers/acme/ledger` is
    acme's ledger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CUSTOMERS_PREFIX):
            raw: bytes | None = scope.get("raw_path")
            # In place: the outer middleware reads the matched route from this same scope.
            scope["path"] = raw.decode("latin-1") if raw else quote(scope["path"], safe="/")
        await self.app(scope, receive, send)


class HeaderLimit:
    """Request headers over MAX_HEADER_BYTES in all: 431. The server's protocol stops a head that
    keeps growing; this catches a complete one that arrived in a single read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > MAX_HEADER_BYTES:
                await send_problem(
                    send,
                    431,
                    f"request headers are {size} bytes; the limit is {MAX_HEADER_BYTES} in all",
                    headers=[(b"connection", b"close")],
                )
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Request bodies over `max_bytes` (RELBANK_MAX_BODY_BYTES): 413, from the declared length
    before reading any, or as soon as a streamed body goes over."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            detail = f"request body is {int(declared)} bytes; the limit is {limit}"
            await send_problem(send, 413, detail)
            return
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # An HTTPException: FastAPI lets it through its body parsing unchanged.
                raise HTTPException(413, f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, receive_limited, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class ErrorBoundary:
    """Every failure becomes problem details: the database unavailable → 503 with Retry-After,
    data PostgreSQL refuses → 422, anything else → 500 (logged). Nothing propagates to the server,
    which would close a keep-alive connection without saying so. An answer given before the
    request body was read says `Connection: close`, so the client does not send the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        body_read = not _has_body(scope)

        async def receive_observed() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def send_observed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_read:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"connection", b"close")],
                    }
            await send(message)

        try:
            await self.app(scope, receive_observed, send_observed)
        except Exception as exc:
            if started:
                raise  # too late for an answer: the server closes the connection
            status, detail, extra = _answer(exc, scope)
            if (request_id := REQUEST_ID.get()) is not None:
                extra["request_id"] = request_id  # what to quote when reporting it
            await send_problem(send_observed, status, detail, **extra)


def _answer(exc: Exception, scope: Scope) -> tuple[int, str, dict[str, Any]]:
    where = f"{scope['method']} {scope['path']}"
    if unavailable(exc):
        log.warning("%s: the database is unavailable (%s)", where, summary(exc))
        return (
            503,
            "the database is unavailable; try again shortly",
            {"headers": [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]},
        )
    if isinstance(exc, DBAPIError) and refused_data(exc):
        log.error("%s: the database refused the data (%s)", where, summary(exc))
        return 422, "the database cannot store this data", {"reason": "bad_data"}
    log.error("%s: unexpected error", where, exc_info=exc)
    return 500, "unexpected error; it has been logged", {}
