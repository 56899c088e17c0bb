"""The FastAPI application: lifespan owns the engine and the background services."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.api import document, history, problems, simulate, ui
from service.api.auth import ApiKeysError, Authenticator, load_api_keys, require
from service.api.edge import BodyLimit, ErrorBoundary, HeaderLimit, RawCustomerPaths
from service.api.health import Readiness
from service.api.hotpath import HotPaths
from service.api.middleware import RequestContext
from service.api.problems import problem_response
from service.api.routes import router
from service.api.views import (
    METRICS_RESPONSES,
    READYZ_RESPONSES,
    BatchResultsOut,
    JSONBody,
    ProblemOut,
    problem_responses,
)
from service.api.webhooks import router as webhooks_router
from service.domain.envelope import CloudEvent
from service.domain.policy import Policy
from service.errors import StartupError
from service.runtime import Role, Runtime, Service
from service.settings import Settings

log = logging.getLogger("relbank")


def authenticator_for(settings: Settings) -> Authenticator:
    if settings.auth == "disabled":
        return Authenticator(None)
    # RELBANK_METRICS_AUTH=disabled: Prometheus scrapes without a key.
    open_scopes = frozenset({"metrics"} if settings.metrics_auth == "disabled" else ())
    if settings.api_keys_file is None:
        raise StartupError(
            "RELBANK_API_KEYS_FILE is not set: no API key could ever be accepted. "
            "Point it at a YAML list of {name, sha256, scopes}, or set RELBANK_AUTH=disabled "
            "explicitly to run without authentication."
        )
    try:
        return Authenticator(load_api_keys(settings.api_keys_file), open_scopes=open_scopes)
    except ApiKeysError as exc:
        raise StartupError(f"RELBANK_API_KEYS_FILE: {exc}") from None


def create_app(
    settings: Settings,
    policy: Policy,
    *,
    role: Role = "all",
    services: list[Service] | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The ASGI app of a process of `role`; its lifespan builds the Runtime and runs `services`
    in the background. Raises `StartupError` for what waiting cannot fix."""
    authenticator = authenticator_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.build(settings, policy, role=role, on_fatal=on_fatal)
        app.state.runtime = rt
        task: asyncio.Task[None] | None = None
        try:
            task = await rt.start(services or [])
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await rt.close()

    app = FastAPI(
        title="relbank",
        version="0.1.0",
        summary="A relationship bank balance per customer: ledger, balances, churn alerts.",
        lifespan=lifespan,
        default_response_class=JSONBody,
        docs_url=None,  # served offline by ui.install
        redoc_url=None,
        # A redirect would be built from the Host header; a path with a trailing slash is a 404.
        redirect_slashes=False,
        # Requests are traced by OpenTelemetry's FastAPI instrumentation when tracing is on
        # (service.tracing) and measured by relbank's own metrics: FastAPI's native telemetry
        # would record every request twice, and looks its providers up on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.authenticator = authenticator
    problems.install(app)
    if role in ("all", "api"):
        app.include_router(history.router)  # before the catch-all customer routes
        app.include_router(simulate.router)
        app.include_router(router)
        app.include_router(webhooks_router)
        ui.install(app)
        _document_event_schemas(app, policy)
    _install_ops(app, role)
    # The first added is the innermost: metrics see the status the error boundary chose.
    if role in ("all", "api"):
        app.add_middleware(HotPaths)
    app.add_middleware(RawCustomerPaths)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ErrorBoundary)
    app.add_middleware(HeaderLimit)
    app.add_middleware(HttpMetrics)
    app.add_middleware(RequestContext)  # last: outermost, so it sees every response
    return app


def _document_event_schemas(app: FastAPI, policy: Policy) -> None:
    """Add the schemas POST /v1/events refers to but FastAPI cannot see (it reads raw bodies)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            ui.declare_bearer(schema)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CloudEvent, BatchResultsOut, ProblemOut):
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            document.refine(schema, policy)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_ops(app: FastAPI, role: Role) -> None:
    worker = role in ("all", "worker")
    readiness = Readiness()

    @app.get("/healthz", include_in_schema=True, tags=["ops"], responses=problem_responses())
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"], responses=READYZ_RESPONSES)
    async def readyz(request: Request) -> Response:
        reasons = await readiness.reasons(request.app.state.runtime)
        if reasons:
            detail = "not ready: " + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
            return problem_response(503, detail, instance="/readyz", components=reasons)
        return JSONBody({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["ops"],
        dependencies=[Depends(require("metrics"))],
        response_class=PlainTextResponse,
        responses=METRICS_RESPONSES,
    )
    async def metrics_endpoint() -> Response:
        # The database-derived gauges are the worker's (refreshed on its timer), not the API's.
        return Response(metrics.exposition(worker=worker), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """Pure ASGI middleware: request count and latency by route template (a bounded label)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            matched = scope.get("route")
            # `path_format` drops the `:path` convertor, so the label is the plain template.
            route = getattr(matched, "path_format", None) or getattr(matched, "path", "unmatched")
            metrics.observe_request(
                str(route), scope["method"], status, time.perf_counter() - started
            )
