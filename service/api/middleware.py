"""The outermost layer of the HTTP app (pure ASGI): a request id on every request, its response
and its log lines; one access-log line per request; the last word on errors nothing else
answered; start-up failures an operator fixes told in one line instead of a traceback."""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response
from service.errors import summary
from service.logs import REQUEST_ID, expected, failure

access_log = logging.getLogger("relbank.access")
log = logging.getLogger("relbank.http")

HEADER = "X-Request-ID"
# Visible ASCII only: an id travels into log lines and headers as it is.
_SANE_ID = re.compile(rb"[\x21-\x7e]{1,128}")
_SECRET_PARAM = re.compile(r"key|token|secret|passw|signature|auth|credential", re.IGNORECASE)
# Probes and scrapes arrive every few seconds: logged at DEBUG unless they fail.
_ROUTINE = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_SECONDS = 5


class RequestContext:
    """Add last (outermost among the app's middleware), so that it sees every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if status is not None:
                    raise  # too late to answer; the server closes the connection
                await self._answer_error(exc, scope, receive, send_with_id)
        finally:
            _log_access(scope, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    @staticmethod
    async def _answer_error(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """A problem-details answer to an exception no handler took: 503 when something relbank
        depends on did not answer (README), else 500, logged with its traceback."""
        failure(log, "%s %s failed", exc, scope["method"], scope["path"])
        request_id = REQUEST_ID.get()
        if expected(exc):
            response = problem_response(
                503,
                f"a service relbank depends on did not answer ({summary(exc, 120)}); retry later",
                instance=scope["path"],
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                request_id=request_id,
            )
        else:
            response = problem_response(
                500,
                "unexpected error; the server log has it under this request id",
                instance=scope["path"],
                request_id=request_id,
            )
        await response(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette reports a failed start-up with the whole traceback as the message, which
        uvicorn logs; for a failure the operator fixes (a bad setting, an unmigrated
        database) one line says it all."""
        held: Message | None = None

        async def hold_failure(message: Message) -> None:
            nonlocal held
            if message["type"] in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
                held = message  # sent once the exception that caused it is known
                return
            await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except BaseException as exc:
            if held is not None:
                await send({**held, "message": str(exc) if expected(exc) else held["message"]})
                held = None
            raise
        finally:
            if held is not None:
                await send(held)


def _incoming_id(scope: Scope) -> str | None:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode("ascii")
    return None


def _target(scope: Scope) -> str:
    """The path as sent, and the query with the values of secret-looking parameters hidden."""
    raw_path: bytes = scope.get("raw_path") or b""
    path = raw_path.decode("latin-1") or str(scope["path"])
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    if not query:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    shown = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs]
    return f"{path}?{urlencode(shown, safe='*')}"


def _log_access(scope: Scope, status: int | None, seconds: float) -> None:
    status = status or 500
    level = logging.DEBUG if scope["path"] in _ROUTINE and status < 400 else logging.INFO
    if not access_log.isEnabledFor(level):
        return  # the line would be dropped: do not build it
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": _target(scope),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "client": client[0] if client else None,
    }
    access_log.log(
        level,
        "%s %s %s %.1fms client=%s",
        fields["method"],
        fields["path"],
        status,
        fields["duration_ms"],
        fields["client"],
        extra=fields,
    )
