"""A short way through for the hottest read, `GET /v1/customers/{id}` answered 200.

Routing, dependency injection and the response class of the framework cost several times what
the read itself costs. This middleware (innermost: every other layer of `create_app` still sees
the request) answers the request itself only when it would be a 200, with the same checks, the
same use case and the same body as the route (`routes.get_customer`); anything else (a bad id,
a missing key or scope, a customer never seen) goes on to the route, which answers it as ever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.edge import CUSTOMERS_PREFIX, SegmentConvertor
from service.api.problems import Problem
from service.api.views import customer_view
from service.domain.envelope import InvalidEvent, check_customer_id

OPERATION = "get_customer"
_SEGMENT = SegmentConvertor()
_MAX_ID = 128  # as the route's path parameter


class HotReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]  # raw (edge.RawCustomerPaths)
            segment = path[len(CUSTOMERS_PREFIX) :]
            if (
                path.startswith(CUSTOMERS_PREFIX)
                and segment
                and "/" not in segment
                and await self._customer(scope, send, segment)
            ):
                return
        await self.app(scope, receive, send)

    async def _customer(self, scope: Scope, send: Send, segment: str) -> bool:
        """Answer GET /v1/customers/{segment} if it is a 200; False when the route must."""
        app: Any = scope["app"]
        try:
            customer_id = _SEGMENT.convert(segment)
            if len(customer_id) > _MAX_ID:
                return False
            customer_id.encode("utf-8")
            customer_id = check_customer_id(customer_id)
            app.state.authenticator.check(Request(scope), "read")
        except (UnicodeError, InvalidEvent, Problem):
            return False
        rt = app.state.runtime
        account = await rt.app.account(customer_id)
        if account is None:
            return False
        body = orjson.dumps(customer_view(account, rt.policy, datetime.now(UTC)))
        scope["route"] = self._route or self._find(app)  # the route's metrics label
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

    def _find(self, app: Any) -> APIRoute | None:
        for route in app.routes:
            if isinstance(route, APIRoute) and route.operation_id == OPERATION:
                self._route = route
        return self._route
