"""OpenTelemetry: with an OTLP endpoint set, a real server sends HTTP, SQL and Kafka spans to a
real OTLP/HTTP receiver; without the packages, one warning and no traces."""

from __future__ import annotations

import asyncio
import gzip
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service import tracing
from service.embedded import EmbeddedBroker
from service.kafka.client import ensure_topics, produce_events
from tests.kafka import conftest as kafka_fixtures
from tests.kafka.conftest import kafka_settings_for
from tests.support.events import make_event
from tests.support.server import free_port, server_env, start_server, stderr_at_exit, wait_ready

broker = kafka_fixtures.broker  # the session's embedded broker fixture, used here too

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="the otel extra is not installed",
)


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP collector that keeps the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def names_and_attributes(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            spans = list(self.spans)
        return [
            (span.name, {a.key: a.value.string_value or a.value.int_value for a in span.attributes})
            for span in spans
        ]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            request = trace_service.ExportTraceServiceRequest.FromString(body)
            with self.server.lock:
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        self.server.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
async def test_a_real_server_sends_http_sql_and_kafka_spans(
    receiver: Receiver, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = kafka_settings_for(database_url, broker.bootstrap)
    await ensure_topics(settings, partitions=1)
    port = free_port()
    env = server_env(
        RELBANK_DATABASE_URL=database_url,
        RELBANK_AUTH="disabled",
        RELBANK_PORT=str(port),
        RELBANK_KAFKA_BOOTSTRAP=broker.bootstrap,
        RELBANK_INPUT_TOPIC=settings.input_topic,
        RELBANK_DLQ_TOPIC=settings.dlq_topic,
        RELBANK_ALERTS_TOPIC=settings.alerts_topic,
        RELBANK_CONSUMER_GROUP=settings.consumer_group,
        RELBANK_CONSUMER_SESSION_TIMEOUT_SECONDS="3s",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_SERVICE_NAME="relbank-test",
    )
    process = await start_server(env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await wait_ready(http, process)
            assert (await http.get("/v1/alerts")).status_code == 200
            await produce_events(settings, [make_event(id="traced-1", subject="traced")])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                spans = receiver.names_and_attributes()
                http_spans = [n for n, _ in spans if n == "GET /v1/alerts"]
                sql_spans = [n for n, a in spans if a.get("db.system") == "postgresql"]
                kafka_spans = [
                    n for n, a in spans if a.get("messaging.system") == "kafka" and "receive" in n
                ]
                # A receive span is sent when the record is fetched, before it is applied.
                applied = (await http.get("/v1/customers/traced")).status_code == 200
                if http_spans and sql_spans and kafka_spans and applied:
                    break
                await asyncio.sleep(0.3)
            spans = receiver.names_and_attributes()
            assert http_spans, spans
            assert sql_spans, spans
            assert kafka_spans, spans
            # The probe the readiness loop polled is left out.
            assert not [n for n, _ in spans if "/readyz" in n], spans
            assert applied, "the traced record was applied"
    finally:
        await stderr_at_exit(process, stop=True)


def test_without_an_endpoint_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.endpoint() is None
    assert not tracing.instrument(FastAPI())
    assert tracing.endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318"
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracing.endpoint(disabled) is None


def test_an_endpoint_without_the_packages_is_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="relbank.tracing"):
        assert not tracing.instrument(FastAPI())
    [record] = caplog.records
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set" in record.getMessage()
    assert "relbank[otel]" in record.getMessage()
