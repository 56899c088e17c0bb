"""Real servers for the API tests: `relbank serve` in a subprocess, the same uvicorn configuration
in-process, and HTTP/1.1 spoken by hand over one TCP connection (h11 on the client side) to see
what a server does with a connection: keeps it, closes it properly, or drops it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import orjson
import uvicorn
from starlette.types import ASGIApp

from service.api.server import server_config
from service.embedded import free_port
from service.settings import Settings
from tests.support.server import server_env, start_server, wait_ready

TIMEOUT = 30.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        head = [("host", "relbank"), ("content-length", str(len(body))), *headers]
        out = self.conn.send(h11.Request(method=method, target=path, headers=head))
        out += self.conn.send(h11.Data(data=body)) if body else b""
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await self.writer.drain()
        response: h11.Response | None = None
        chunks = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
                self.conn.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection mid-answer")
        assert response is not None
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        found = {k.decode().lower(): v.decode() for k, v in response.headers}
        return Answer(response.status_code, found, bytes(chunks))

    async def closed_by_server(self, *, within: float) -> bool:
        """Whether the server closes this connection within `within` seconds (reading and
        dropping whatever it sends meanwhile)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
        return False

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def serving(app: ASGIApp, settings: Settings) -> AsyncIterator[int]:
    """`app` served in this process by uvicorn configured as `relbank serve` does it; yields the
    port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, settings.model_copy(update={"port": port})))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise AssertionError(f"the server did not start: {task}")
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


@dataclass
class Served:
    pid: int
    port: int
    # The server's standard error, once it has stopped.
    log: str = field(default="")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def relbank_serve(**variables: str) -> AsyncIterator[Served]:
    """`relbank serve` on a free port with these RELBANK_* variables, ready; stopped on exit,
    its output read all along so that it never blocks on a full pipe."""
    port = free_port()
    process = await start_server(env=server_env(RELBANK_PORT=str(port), **variables))
    served = Served(process.pid, port)
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=TIMEOUT) as http:
            await wait_ready(http, process)
        output = asyncio.create_task(process.communicate())
        try:
            yield served
        finally:
            if process.returncode is None:
                process.terminate()
            _, err = await asyncio.wait_for(output, 60)
            served.log = err.decode(errors="replace")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
