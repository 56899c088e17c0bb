"""The server against hostile and careless clients (issue 7, items 3 and 7): a request head that
never ends costs no memory, a huge one is a 431, a half-sent or idle connection is dropped,
connections are bounded, and an unexpected error is problem details on a connection that stays
usable. Real servers: `relbank serve` in a subprocess (to measure its memory) and the same
uvicorn configuration in-process (to add a failing route)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.app import create_app
from service.domain.policy import load_policy
from tests.support.app import make_settings
from tests.support.events import make_event
from tests.support.http import PROBLEM_JSON
from tests.support.live import Answer, RawConnection, Served, relbank_serve, serving

# Slow: real servers spoken to over TCP, one a `relbank serve` process (not in `-m "not slow"`).
pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2
MIB = 1 << 20
# The process may grow a little while it works; the attack alone grew it by over 400 MiB.
RSS_MARGIN = 48 * MIB


def assert_problem_answer(answer: Answer, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    assert answer.json()["status"] == status


@pytest.fixture
async def served(clean: AsyncEngine, database_url: str) -> AsyncIterator[Served]:
    """`relbank serve` with a short head deadline."""
    async with relbank_serve(
        RELBANK_DATABASE_URL=database_url,
        RELBANK_AUTH="disabled",
        RELBANK_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
    ) as served:
        yield served


def vm(pid: int, field: str) -> int:
    """A `Vm*` line of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    """From now on VmHWM is the peak since this call (Linux ≥ 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def endless_head(port: int, *, size: int) -> bytes | None:
    """Send a request head whose one header grows to `size` bytes and never ends. Returns what
    the server answered before it closed the connection (b"" if nothing), None if it never
    closed it."""
    connection = await RawConnection.open(port)
    try:
        connection.writer.write(b"GET /healthz HTTP/1.1\r\nHost: relbank\r\nX-Endless: ")
        chunk = b"a" * MIB
        with contextlib.suppress(ConnectionError):
            for _ in range(size // MIB):
                connection.writer.write(chunk)
                await connection.writer.drain()
        answer = bytearray()
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(connection.reader.read(65536), left)
            except ConnectionError:
                return bytes(answer)
            except TimeoutError:
                break
            if not data:
                return bytes(answer)
            answer += data
        return None
    finally:
        connection.close()


async def test_endless_request_heads_cost_no_memory(served: Served) -> None:
    pid, port = served.pid, served.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for _ in range(20):  # warm up what ordinary requests allocate
            assert (await http.get("/healthz")).status_code == 200
    before = vm(pid, "VmRSS")
    reset_peak(pid)
    peak = before

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, vm(pid, "VmRSS"))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        answers = await asyncio.gather(*(endless_head(port, size=32 * MIB) for _ in range(10)))
    finally:
        watcher.cancel()
    peak = max(peak, vm(pid, "VmHWM"))

    assert peak - before < RSS_MARGIN, (before // MIB, peak // MIB)
    for answer in answers:
        assert answer is not None, "the server kept a connection with an endless head open"
        # Whoever read an answer read a 431.
        assert not answer or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_ten_thousand_headers_are_a_431_problem(served: Served) -> None:
    port = served.port
    headers = [(f"x-h-{i}", "v") for i in range(10_000)]
    connection = await RawConnection.open(port)
    try:
        answer = await connection.request("GET", "/healthz", headers=headers)
    finally:
        connection.close()
    assert_problem_answer(answer, 431)
    assert answer.headers["connection"] == "close"

    # Just over the cap, sent at once: read whole, and refused all the same.
    connection = await RawConnection.open(port)
    try:
        over = [(f"x-h-{i}", "v" * 100) for i in range(160)]
        assert_problem_answer(await connection.request("GET", "/healthz", headers=over), 431)
    finally:
        connection.close()

    # Just under the cap is fine.
    connection = await RawConnection.open(port)
    try:
        fits = [(f"x-h-{i}", "v" * 100) for i in range(100)]
        assert (await connection.request("GET", "/healthz", headers=fits)).status == 200
    finally:
        connection.close()


async def test_a_half_sent_head_and_an_idle_connection_are_dropped(
    served: Served,
) -> None:
    port = served.port
    half = await RawConnection.open(port)
    idle = await RawConnection.open(port)
    kept = await RawConnection.open(port)
    try:
        half.writer.write(b"GET /healthz HTTP/1.1\r\nHost: relbank\r\nX-A: b\r\n")
        assert (await kept.request("GET", "/healthz")).status == 200

        # Each is closed by the server, the half-sent head after HEADER_TIMEOUT, the idle ones
        # after the head deadline or the keep-alive timeout.
        for connection in (half, idle, kept):
            assert await connection.closed_by_server(within=30)
    finally:
        for connection in (half, idle, kept):
            connection.close()


async def test_a_slow_but_complete_head_is_served(served: Served) -> None:
    port = served.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: relbank\r\n", b"\r\n"):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(HEADER_TIMEOUT / 10)  # pacing, well inside the deadline
        status = await asyncio.wait_for(reader.readline(), 30)
        assert status.startswith(b"HTTP/1.1 200 "), status
    finally:
        writer.close()


async def test_a_protocol_error_is_a_400_problem(served: Served) -> None:
    port = served.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: relbank\r\nBad Header\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert PROBLEM_JSON.encode() in head
    assert b'"status":400' in body


async def boom() -> None:
    raise RuntimeError("secret internals")


async def test_an_unexpected_error_is_a_500_problem_on_a_connection_that_stays_usable(
    clean: AsyncEngine, database_url: str
) -> None:
    settings = make_settings(database_url)
    app = create_app(settings, load_policy())
    app.add_api_route("/boom", boom)
    async with serving(app, settings) as port:
        connection = await RawConnection.open(port)
        try:
            answer = await connection.request("GET", "/boom")
            assert_problem_answer(answer, 500)
            assert b"secret internals" not in answer.body
            assert answer.headers.get("connection") != "close"

            # The same connection goes on; and the raw path routes an encoded slash.
            event = make_event(id="k1", subject="acme/ledger")
            posted = await connection.request(
                "POST",
                "/v1/events",
                body=orjson.dumps(event),
                headers=[("content-type", "application/json")],
            )
            assert posted.status == 200, posted.body
            customer = await connection.request("GET", "/v1/customers/acme%2Fledger")
            assert customer.json()["customer_id"] == "acme/ledger"
        finally:
            connection.close()


async def test_connections_over_the_limit_get_a_503_problem(
    clean: AsyncEngine, database_url: str
) -> None:
    settings = make_settings(database_url, max_connections=4, header_timeout_seconds=120)
    app = create_app(settings, load_policy())
    async with serving(app, settings) as port:
        idle = [await RawConnection.open(port) for _ in range(4)]
        try:
            # Once the server has taken in all four:
            answer = await probe_until(port, 503)
            assert_problem_answer(answer, 503)
            assert answer.headers["retry-after"]
        finally:
            for connection in idle:
                connection.close()
        # Once the server has seen them go:
        assert (await probe_until(port, 200)).status == 200


async def probe_until(port: int, status: int) -> Answer:
    """GET /healthz on a new connection each time, until it answers `status` or 30 s passed."""
    deadline = time.monotonic() + 30
    while True:
        probe = await RawConnection.open(port)
        try:
            answer = await probe.request("GET", "/healthz")
        finally:
            probe.close()
        if answer.status == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)
