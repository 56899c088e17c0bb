"""A real server: `relbank serve` (uvicorn) in a subprocess, spoken to over TCP."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.events import make_event
from tests.support.http import event_at, now, rfc
from tests.support.oracle import balance_at, close
from tests.support.server import START_TIMEOUT, free_port, server_env, start_server, wait_ready

# Slow: `relbank serve` processes (left out by `-m "not slow"`).
pytestmark = pytest.mark.slow


async def raw_request(*, port: int, head: bytes) -> bytes:
    """Send only a request head over TCP and return the status line the server answers with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()


async def test_real_server_ingests_and_reads_over_tcp(
    clean: AsyncEngine, database_url: str
) -> None:
    port = free_port()
    env = server_env(
        RELBANK_DATABASE_URL=database_url,
        RELBANK_AUTH="disabled",
        RELBANK_HOST="127.0.0.1",
        RELBANK_PORT=str(port),
        RELBANK_MAX_BODY_BYTES=str(256 * 1024),
    )
    process = await start_server(env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await wait_ready(http, process)
            assert (await http.get("/healthz")).status_code == 200

            t0 = now() - timedelta(days=20)
            batch = [
                event_at(id=f"srv{i}", subject=f"c{i % 3}", at=t0 + timedelta(days=i))
                for i in range(12)
            ]
            batch.append(make_event(id="srv-x", subject="leaving", type="cancellation.requested"))
            batch.append(batch[0])
            response = await http.post(
                "/v1/events",
                content=orjson.dumps(batch),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert response.status_code == 200, response.text
            outcomes = [r["outcome"] for r in response.json()["results"]]
            assert outcomes == ["applied"] * 13 + ["duplicate"]

            entries = [(6.0, t0 + timedelta(days=i)) for i in range(12) if i % 3 == 1]
            body = (await http.get("/v1/customers/c1")).json()
            assert body["entries"] == 4
            assert close(body["balance"], balance_at(entries, now()))
            t = t0 + timedelta(days=6, hours=1)
            response = await http.get("/v1/customers/c1/balance", params={"at": rfc(t)})
            assert close(response.json()["balance"], balance_at(entries, t))
            ledger = (await http.get("/v1/customers/c1/ledger", params={"limit": 2})).json()
            assert len(ledger["items"]) == 2
            assert ledger["next_cursor"]
            alerts = (await http.get("/v1/alerts")).json()["items"]
            assert [(a["customer_id"], a["kind"]) for a in alerts] == [("leaving", "at_risk")]
            assert "relbank_events_total" in (await http.get("/metrics")).text

            # Over the limit with a declared length: 413 from the head alone, body never sent.
            status_line = await raw_request(
                port=port,
                head=(
                    b"POST /v1/events HTTP/1.1\r\nHost: relbank\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
                ),
            )
            assert status_line.startswith(b"HTTP/1.1 413"), status_line
            assert (await http.get("/readyz")).status_code == 200

        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        log = err.decode()
        # Graceful: the lifespan ran its shutdown (uvicorn re-raises SIGTERM once done).
        assert process.returncode in (0, -signal.SIGTERM), (process.returncode, log[-2000:])
        assert "Application shutdown complete" in log, log[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_refuses_to_start_without_keys_unless_auth_is_disabled(
    database_url: str,
) -> None:
    env = server_env(RELBANK_DATABASE_URL=database_url, RELBANK_PORT=str(free_port()))
    process = await start_server(env=env)
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout=START_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode not in (0, None)
    assert "RELBANK_API_KEYS_FILE" in err.decode(), err.decode()[-2000:]
