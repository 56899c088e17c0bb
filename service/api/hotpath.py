"""A short way through for the hottest requests: `GET /v1/customers/{id}` and `POST /v1/events`
once their id and key pass.

Routing, dependency injection and the response class of the framework cost several times what
a one-row read or a single event costs. This middleware (innermost: every other layer of
`create_app` still sees the request) answers those itself, with the same checks, the same code
and the same answers as their routes (`routes.get_customer`, `routes.post_events`): a read once
its id and key pass (the customer, or the 404 of one never seen), an ingest once its key is
accepted. Anything else (a bad id, a missing key or scope) goes on to the route, which answers
it as ever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import inputs, problems, routes
from service.api.edge import CUSTOMERS_PREFIX, SegmentConvertor
from service.api.problems import Problem
from service.api.views import customer_view, json_bytes

EVENTS = "/v1/events"
_SEGMENT = SegmentConvertor()
_MAX_ID = 128  # as the route's path parameter


class HotPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[str, APIRoute] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"] == EVENTS:
            if await self._ingest(scope, receive, send):
                return
        elif scope["method"] == "GET":
            path: str = scope["path"]  # raw (edge.RawCustomerPaths)
            segment = path[len(CUSTOMERS_PREFIX) :]
            if (
                path.startswith(CUSTOMERS_PREFIX)
                and segment
                and "/" not in segment
                and await self._customer(scope, receive, send, segment)
            ):
                return
        await self.app(scope, receive, send)

    async def _customer(self, scope: Scope, receive: Receive, send: Send, segment: str) -> bool:
        """Answer GET /v1/customers/{segment} once its id and key pass; False when the route
        must."""
        app: Any = scope["app"]
        try:
            customer_id = _SEGMENT.convert(segment)
            if len(customer_id) > _MAX_ID:
                return False
            customer_id = inputs.checked_customer_id(customer_id)
            app.state.authenticator.check(Request(scope), "read")
        except (UnicodeError, Problem):
            return False
        rt = app.state.runtime
        account = await rt.app.account(customer_id)
        self._matched(scope, "get_customer")
        if account is None:  # as the route answers it, without reading it again
            request = Request(scope, receive)
            await problems.answer(request, routes.never_seen(customer_id))(scope, receive, send)
            return True
        body = json_bytes(customer_view(account, rt.policy, datetime.now(UTC)))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    async def _ingest(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer POST /v1/events unless the key may not write (then False: the route says so)."""
        app: Any = scope["app"]
        request = Request(scope, receive)
        try:
            app.state.authenticator.check(request, "events:write")
        except Problem:
            return False
        self._matched(scope, "post_events")
        response: Response
        try:
            response = await routes.ingest(request, app.state.runtime)
        except (Problem, HTTPException) as exc:  # as the app's exception handlers answer them
            response = problems.answer(request, exc)
        await response(scope, receive, send)
        return True

    def _matched(self, scope: Scope, operation: str) -> None:
        """Record the route as routing would have (the metrics label it by its template)."""
        if operation not in self._routes:
            todo: list[Any] = list(scope["app"].routes)
            while todo:  # an included router is one entry of the app's routes
                route = todo.pop()
                todo += getattr(getattr(route, "original_router", None), "routes", [])
                if isinstance(route, APIRoute) and route.operation_id == operation:
                    self._routes[operation] = route
        scope["route"] = self._routes.get(operation)
