"""Logs: one format for relbank and uvicorn, a request id on every request and its log lines,
an access log, and tracebacks only for the unexpected."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from service import logs
from service.api.app import create_app
from service.domain.policy import load_policy
from service.settings import SettingsError
from tests.support.app import make_settings
from tests.support.db import admin_sql, with_database
from tests.support.server import free_port, server_env, start_server, stderr_at_exit, wait_ready

URL = "postgresql://postgres@127.0.0.1:1/unused"  # the in-process app never connects


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged during the test, as JSON lines."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("DEBUG", "json", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_fields_uvicorn_included(captured: io.StringIO) -> None:
    token = logs.REQUEST_ID.set("req-1")
    try:
        logging.getLogger("relbank.x").info("hello %s", "world", extra={"customer_id": "acme"})
    finally:
        logs.REQUEST_ID.reset(token)
    logging.getLogger("uvicorn.error").info("Started server process", extra={"color_message": "x"})
    first, second = records(captured)
    assert first["logger"] == "relbank.x"
    assert first["level"] == "INFO"
    assert first["msg"] == "hello world"
    assert first["request_id"] == "req-1"
    assert first["customer_id"] == "acme"
    assert first["ts"].endswith("Z")
    assert second["logger"] == "uvicorn.error"
    assert "request_id" not in second
    assert "color_message" not in second


def test_a_broker_that_is_down_is_not_a_flood_of_lines(captured: io.StringIO) -> None:
    for node in range(200):
        logging.getLogger("aiokafka").error("Unable connect to node %s: %s", node, "refused")
    logging.getLogger("aiokafka.consumer").error("Heartbeat failed")
    for _ in range(3):
        logging.getLogger("relbank.consumer").error("relbank's own lines all pass")
    lines = [(r["logger"], r["msg"]) for r in records(captured)]
    assert (
        lines
        == [
            ("aiokafka", "Unable connect to node 0: refused"),
            ("aiokafka.consumer", "Heartbeat failed"),
        ]
        + [("relbank.consumer", "relbank's own lines all pass")] * 3
    )


def test_a_held_back_message_comes_through_again_with_its_count() -> None:
    repeats = logs.Repeats(every=60)

    def at(created: float) -> logging.LogRecord:
        record = logging.LogRecord("aiokafka", logging.ERROR, "", 0, "down: %s", ("x",), None)
        record.created = created
        return record

    passed = [r.getMessage() for r in map(at, [0, 1, 2, 59, 61, 62]) if repeats.filter(r)]
    assert passed == ["down: x", "down: x (3 more like it held back)"]


def test_text_is_one_format_for_relbank_and_uvicorn() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("info", "text", stream=stream)
    try:
        logging.getLogger("relbank").warning("one")
        logging.getLogger("uvicorn.error").info("two")
        logging.getLogger("relbank").debug("not shown at INFO")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" WARNING relbank: one")
    assert lines[1].endswith(" INFO uvicorn.error: two")


def test_an_expected_failure_is_one_line_and_a_bug_a_traceback(captured: io.StringIO) -> None:
    log = logging.getLogger("relbank.t")
    down = OperationalError("SELECT 1", {}, ConnectionRefusedError("connect call failed"))
    for exc in (down, ConnectionRefusedError(111, "refused"), SettingsError(["RELBANK_X: bad"])):
        logs.failure(log, "refresh failed for %s", exc, "gauges")
    try:
        raise KeyError("missing")  # a bug, to log
    except KeyError as bug:
        logs.failure(log, "refresh failed for %s", bug, "gauges")
    *expected, unexpected = records(captured)
    assert [r["level"] for r in expected] == ["WARNING"] * 3
    assert all("exc" not in r and "\n" not in r["msg"] for r in expected)
    assert expected[0]["msg"].startswith("refresh failed for gauges: OperationalError:")
    assert unexpected["level"] == "ERROR"
    assert "Traceback" in unexpected["exc"]
    assert "KeyError" in unexpected["exc"]


def app_with_test_routes() -> FastAPI:
    app = create_app(make_settings(URL), load_policy())

    async def chatty() -> dict[str, str]:
        logging.getLogger("relbank.test").info("inside the request")
        return {"ok": "yes"}

    async def boom() -> None:
        raise RuntimeError("a bug")

    async def down() -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    async def typed(n: int) -> int:
        return n

    app.add_api_route("/test/chatty", chatty)
    app.add_api_route("/test/boom", boom)
    app.add_api_route("/test/down", down)
    app.add_api_route("/test/typed", typed)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_with_test_routes())
    async with httpx.AsyncClient(transport=transport, base_url="http://relbank") as http:
        yield http


async def test_a_sane_request_id_is_echoed_and_carried_by_every_log_line(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    response = await client.get(
        "/test/chatty?after=1&api_key=sekrit", headers={"X-Request-ID": "abc-123"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"
    lines = records(captured)
    inside = next(r for r in lines if r["msg"] == "inside the request")
    assert inside["request_id"] == "abc-123"
    access = next(r for r in lines if r["logger"] == "relbank.access")
    assert access["request_id"] == "abc-123"
    assert access["level"] == "INFO"
    assert access["method"] == "GET"
    assert access["path"] == "/test/chatty?after=1&api_key=***"
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
    assert access["client"] == "127.0.0.1"
    assert not [r for r in lines if r["logger"].startswith("relbank") and "sekrit" in str(r)]


@pytest.mark.parametrize(
    "incoming",
    [None, "x" * 129, "has space", "new\tline", ""],
)
async def test_a_missing_or_insane_request_id_is_replaced(
    client: httpx.AsyncClient, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    response = await client.get("/healthz", headers=headers)
    generated = response.headers["x-request-id"]
    assert generated != incoming
    assert uuid.UUID(hex=generated).version == 4


async def test_error_answers_carry_the_request_id(client: httpx.AsyncClient) -> None:
    for path, status in [("/nowhere", 404), ("/test/typed?n=x", 422)]:
        response = await client.get(path, headers={"X-Request-ID": f"id-{status}"})
        assert response.status_code == status
        assert response.headers["x-request-id"] == f"id-{status}"


async def test_an_unhandled_bug_is_a_500_problem_with_the_id_and_one_traceback(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    response = await client.get("/test/boom", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json()["request_id"] == "bug-1"
    assert "a bug" not in response.text
    failed = [r for r in records(captured) if r["logger"] == "relbank.http"]
    assert len(failed) == 1
    assert failed[0]["request_id"] == "bug-1"
    assert "RuntimeError: a bug" in failed[0]["exc"]
    access = next(r for r in records(captured) if r["logger"] == "relbank.access")
    assert access["status"] == 500


async def test_a_dependency_that_does_not_answer_is_a_503_in_one_line(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    response = await client.get("/test/down")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["x-request-id"]
    failed = [r for r in records(captured) if r["logger"] == "relbank.http"]
    assert len(failed) == 1
    assert failed[0]["level"] == "WARNING"
    assert "exc" not in failed[0]
    assert "ConnectionRefusedError" in failed[0]["msg"]


async def test_probes_that_succeed_are_logged_at_debug(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    access = [r for r in records(captured) if r["logger"] == "relbank.access"]
    assert [(r["path"], r["level"]) for r in access] == [("/healthz", "DEBUG")]


@pytest.mark.slow
async def test_a_real_server_logs_json_only_uvicorn_included(database_url: str) -> None:
    port = free_port()
    env = server_env(
        RELBANK_DATABASE_URL=database_url,
        RELBANK_AUTH="disabled",
        RELBANK_PORT=str(port),
        RELBANK_LOG_FORMAT="json",
        RELBANK_LOG_LEVEL="info",
    )
    process = await start_server(env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await wait_ready(http, process)
            response = await http.get("/v1/alerts", headers={"X-Request-ID": "tcp-1"})
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "tcp-1"
            missing = await http.get("/v1/customers/nobody", headers={"X-Request-ID": "tcp-2"})
            assert missing.status_code == 404
            assert missing.headers["x-request-id"] == "tcp-2"
    finally:
        err = await stderr_at_exit(process, stop=True)
    lines = [orjson.loads(line) for line in err.splitlines()]  # each one JSON
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any(r["logger"].startswith("uvicorn") and "startup complete" in r["msg"] for r in lines)
    access = {r["request_id"]: r for r in lines if r["logger"] == "relbank.access"}
    assert (access["tcp-1"]["path"], access["tcp-1"]["status"]) == ("/v1/alerts", 200)
    assert access["tcp-2"]["status"] == 404


@pytest.mark.slow
async def test_an_unmigrated_database_stops_the_server_in_one_line(server_url: str) -> None:
    name = f"relbank_empty_{uuid.uuid4().hex[:8]}"
    await admin_sql(server_url, f'CREATE DATABASE "{name}"')
    try:
        env = server_env(
            RELBANK_DATABASE_URL=with_database(server_url, name),
            RELBANK_AUTH="disabled",
            RELBANK_PORT=str(free_port()),
        )
        process = await start_server(env=env)
        text = await stderr_at_exit(process, stop=False)
    finally:
        await admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert process.returncode not in (0, None)
    assert "run `relbank migrate` first" in text, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
