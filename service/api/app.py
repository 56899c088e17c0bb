"""The FastAPI application: lifespan owns the engine and the background services."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, ProgrammingError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.api import problems
from service.api.auth import ApiKeysError, Authenticator, load_api_keys
from service.api.context import Context
from service.api.problems import problem_response
from service.api.routes import router
from service.api.views import BatchResultsOut, JSONBody
from service.domain.envelope import CloudEvent
from service.domain.policy import Policy
from service.retry import backoff
from service.settings import Settings
from service.storage import policies, reads
from service.storage.db import make_engine, sqlstate

log = logging.getLogger("relbank")

Role = Literal["all", "api", "consumer", "worker"]
READY_POLICY = "policy"
# A background service runs until cancelled; it may report readiness problems in ctx.not_ready.
Service = Callable[[Context], Coroutine[Any, Any, None]]


def authenticator_for(settings: Settings) -> Authenticator:
    if settings.auth == "disabled":
        return Authenticator(None)
    if settings.api_keys_file is None:
        raise SystemExit(
            "relbank: RELBANK_API_KEYS_FILE is not set: no API key could ever be accepted. "
            "Point it at a YAML list of {name, sha256, scopes}, or set RELBANK_AUTH=disabled "
            "explicitly to run without authentication."
        )
    try:
        return Authenticator(load_api_keys(settings.api_keys_file))
    except ApiKeysError as exc:
        raise SystemExit(f"relbank: RELBANK_API_KEYS_FILE: {exc}") from None


def create_app(
    settings: Settings,
    policy: Policy,
    *,
    role: Role = "all",
    services: list[Service] | None = None,
) -> FastAPI:
    authenticator = authenticator_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.async_database_url, pool_size=settings.database_pool_size)
        ctx = Context(settings, policy, engine, authenticator)
        app.state.ctx = ctx
        tasks: list[asyncio.Task[None]] = []
        try:
            if await _activate(ctx):
                tasks = [asyncio.create_task(service(ctx)) for service in services or []]
            else:
                # PostgreSQL is not there yet: serve /healthz and a 503 /readyz meanwhile rather
                # than exit (an orchestrator would only restart us into the same wait).
                tasks = [asyncio.create_task(_activate_then_run(ctx, services or []))]
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title="relbank",
        version="0.1.0",
        summary="A relationship bank balance per customer: ledger, balances, churn alerts.",
        lifespan=lifespan,
        default_response_class=JSONBody,
    )
    problems.install(app)
    if role in ("all", "api"):
        app.include_router(router)
        _document_event_schemas(app)
    _install_ops(app)
    app.add_middleware(HttpMetrics)
    return app


async def _activate(ctx: Context) -> bool:
    """Record the policy as active; False while the database cannot be reached. A policy the
    stored balances do not fit, or a database never migrated, stop start-up with the fix."""
    try:
        async with ctx.engine.begin() as conn:
            await policies.activate(conn, ctx.policy)
    except policies.PolicyMismatch as exc:
        raise SystemExit(f"relbank: RELBANK_POLICY: {exc}") from None
    except ProgrammingError as exc:
        if sqlstate(exc) == "42P01":  # undefined table
            raise SystemExit(
                "relbank: the database has no relbank tables: run `relbank migrate` first"
            ) from None
        raise
    except (OSError, DBAPIError) as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()[:300]
        ctx.not_ready[READY_POLICY] = f"waiting for PostgreSQL to record the policy ({reason})"
        log.warning("start-up: PostgreSQL does not answer (%s); waiting for it", reason)
        return False
    ctx.not_ready.pop(READY_POLICY, None)
    return True


async def _activate_then_run(ctx: Context, services: list[Service]) -> None:
    attempt = 0
    while not await _activate(ctx):
        attempt += 1
        await asyncio.sleep(backoff(attempt, cap=30.0))
    log.info("start-up: PostgreSQL answered; policy %s is active", ctx.policy.version)
    tasks = [asyncio.create_task(service(ctx)) for service in services]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _document_event_schemas(app: FastAPI) -> None:
    """Add the schemas POST /v1/events refers to but FastAPI cannot see (it reads raw bodies)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CloudEvent, BatchResultsOut):
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_ops(app: FastAPI) -> None:
    gauges = _GaugeRefresher()

    @app.get("/healthz", include_in_schema=True, tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> Response:
        ctx: Context = request.app.state.ctx
        reasons = dict(ctx.not_ready)
        try:
            async with asyncio.timeout(2):
                async with ctx.engine.connect() as conn:
                    await reads.ping(conn)
        except Exception as exc:  # any failure to answer is "not ready"
            reasons["database"] = f"{type(exc).__name__}: {exc}".strip()[:300]
        if reasons:
            detail = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
            return problem_response(503, detail, instance="/readyz", components=reasons)
        return JSONBody({"status": "ready"})

    @app.get("/metrics", tags=["ops"])
    async def metrics_endpoint(request: Request) -> Response:
        await gauges.refresh(request.app.state.ctx)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _GaugeRefresher:
    """Database-derived gauges, refreshed on scrape at most every few seconds."""

    def __init__(self, every_seconds: float = 5.0) -> None:
        self._every = every_seconds
        self._last = 0.0
        self._shown: set[str] = set()

    async def refresh(self, ctx: Context) -> None:
        if time.monotonic() - self._last < self._every:
            return
        self._last = time.monotonic()
        try:
            async with ctx.engine.connect() as conn:
                counts = await reads.account_counts(conn)
                lowest = await reads.lowest_at_risk(conn, ctx.settings.at_risk_gauge_limit)
                pending = await reads.outbox_pending(conn)
        except Exception:
            log.warning("metrics: could not refresh database gauges", exc_info=True)
            return
        for status, n in counts.items():
            metrics.ACCOUNTS.labels(status=status).set(n)
        metrics.OUTBOX_PENDING.set(pending)
        now = datetime.now(UTC)
        shown = set()
        for account in lowest:
            metrics.AT_RISK_BALANCE.labels(customer_id=account.customer_id).set(
                account.balance(now, ctx.policy)
            )
            shown.add(account.customer_id)
        for gone in self._shown - shown:
            metrics.AT_RISK_BALANCE.remove(gone)
        self._shown = shown


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
            metrics.HTTP_REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(
                route=route, method=scope["method"], status=str(status)
            ).inc()
