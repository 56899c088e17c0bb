"""Optional OpenTelemetry traces of HTTP requests, SQL statements and Kafka records.

On when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set; spans go there over OTLP/HTTP, configured by the standard `OTEL_*` variables
(`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, ...). The packages
are the `otel` extra (`pip install 'relbank[otel]'`), imported only then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("relbank.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Probes and scrapes would be most of the spans and tell nothing.
UNTRACED_PATHS = "/healthz,/readyz,/metrics"


def endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    """Where spans go, or None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)


def instrument(app: FastAPI) -> bool:
    """Trace `app`'s requests, the statements of the engine its lifespan creates and every
    aiokafka client of this process, when an endpoint is configured; True if tracing is on."""
    target = endpoint()
    if target is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import set_tracer_provider
    except ImportError as exc:
        log.warning(
            "tracing: %s is set but the OpenTelemetry packages are not installed (no module "
            "%s): no traces. Install relbank[otel].",
            next(name for name in ENDPOINT_VARIABLES if os.environ.get(name)),
            exc.name,
        )
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or "relbank"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", UNTRACED_PATHS),
    )
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    sql = SQLAlchemyInstrumentor()
    started = app.router.lifespan_context

    # The engine is made in the lifespan; trace it once it exists.
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with started(app) as state:
            # It declares SQLAlchemy < 2.1 only; the events it listens to are the same in 2.1
            # (tests/test_tracing.py sees its spans).
            sql.instrument(
                engine=app.state.runtime.db.engine.sync_engine,
                tracer_provider=provider,
                skip_dep_check=True,
            )
            yield state

    app.router.lifespan_context = lifespan
    log.info("tracing: HTTP, SQL and Kafka spans go to %s as %s", target, name)
    return True
