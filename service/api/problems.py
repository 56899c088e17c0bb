"""RFC 9457 problem details for every error the API answers."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Message, Send

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.headers = headers
        self.status = status
        self.detail = detail
        self.type = type_
        self.extra = extra


def problem_body(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    type_: str = "about:blank",
    **extra: Any,
) -> bytes:
    body: dict[str, Any] = {
        "type": type_,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return orjson.dumps(body)


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status, detail, instance=instance, type_=type_, **extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def send_problem(
    send: Send,
    status: int,
    detail: str,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    **extra: Any,
) -> None:
    """Answer with problem details straight over ASGI (for middleware and the server)."""
    body = problem_body(status, detail, **extra)
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def answer(request: Request, exc: Problem | StarletteHTTPException) -> Response:
    """The problem details a route's `Problem` or HTTP exception is answered with."""
    if isinstance(exc, Problem):
        return problem_response(
            exc.status,
            exc.detail,
            instance=request.url.path,
            type_=exc.type,
            headers=exc.headers,
            **exc.extra,
        )
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    return problem_response(
        exc.status_code, str(exc.detail), instance=request.url.path, headers=headers or None
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return answer(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return problem_response(422, detail, instance=request.url.path, errors=errors)


def _allowed(request: Request) -> list[str]:
    """Every method of every route on this path (Starlette names only the first route's)."""
    path: str = request.scope["path"]
    methods: set[str] = set()
    todo: list[Any] = list(request.app.router.routes)
    while todo:
        route = todo.pop()
        # FastAPI keeps an included router whole, as one entry.
        todo += getattr(getattr(route, "original_router", None), "routes", [])
        regex, found = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and found and regex.match(path):
            methods |= found
    return sorted(methods)
