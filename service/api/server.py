"""The HTTP server: uvicorn with httptools (llhttp) and the limits a hostile client must not get
past.

llhttp, uvicorn's fastest parser, puts no bound on a request head by itself; this counts it, so a
head that never ends costs at most MAX_HEADER_BYTES and a read or two. On top of uvicorn's httptools
protocol this adds: 431 problem details for a head over the cap and 400 problem details for one
llhttp cannot parse (uvicorn answers plain text), a deadline for a request head, a bound on
connections answered with problem details, and a lingering close, so a rejected client reads its
answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.api.edge import MAX_HEADER_BYTES
from service.api.problems import PROBLEM_JSON, problem_body, send_problem
from service.settings import Settings

log = logging.getLogger("relbank")

KEEP_ALIVE_SECONDS = 5
# After refusing a request head, how long to read and drop what the client still sends.
LINGER_SECONDS = 2.0


class RelbankHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of README (class attributes, set per
    server)."""

    header_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = self._bounded(self.app)
        self._head_timer: asyncio.TimerHandle | None = None
        self._discarding = False
        # The client owes us a request head: from the connection, and again once a request
        # was read in full.
        self._awaiting_head = True
        # Bytes of the awaited head read so far (llhttp keeps what it has not finished parsing).
        # A head that arrives whole is measured by `edge.HeaderLimit`.
        self._head_read = 0
        self._heads_read = 0

    # The head deadline runs while the client owes us a request head: from the connection, or
    # from the first byte of the next request on a kept-alive one (idle time between requests
    # is uvicorn's keep-alive timeout).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        began_in_head, heads = self._awaiting_head, self._heads_read
        super().data_received(data)
        # Only a chunk that lies inside one head counts whole: one that ends a head (or a body)
        # counts from the next, so the cap may be passed by at most a chunk.
        if self._discarding or not began_in_head or self._heads_read != heads:
            return
        self._head_read += len(data)
        if self._head_read > MAX_HEADER_BYTES:
            self.send_400_response("request head over the cap")

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._heads_read += 1
        self._head_read = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            log.info("http: closing a connection that sent no complete request head in time")
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request llhttp cannot parse: problem details, 431 when the head
        outgrew the cap."""
        if self._head_read > MAX_HEADER_BYTES:
            status, detail = 431, f"the request head is over {MAX_HEADER_BYTES} bytes"
        else:
            status, detail = 400, "invalid HTTP request"
        body = problem_body(status, detail)
        head = (
            f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(STATUS_LINE[status] + head.encode() + body)
        self._linger()

    def _linger(self) -> None:
        """Close after the answer, reading and dropping what the client still sends for a
        while: closing with unread data would reset the connection and lose the answer."""
        self._discarding = True
        self._cancel_head_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _bounded(self, app: ASGIApp) -> ASGIApp:
        async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
            limit = self.max_connections
            if scope["type"] == "http" and (
                len(self.connections) > limit or len(self.tasks) > limit
            ):
                log.warning("http: over %d connections; answering 503", limit)
                await send_problem(
                    send,
                    503,
                    "the server has too many connections open; try again shortly",
                    headers=[(b"connection", b"close"), (b"retry-after", b"1")],
                )
                return
            await app(scope, receive, send)

        return bounded


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    protocol = type(
        "RelbankHttpConfigured",
        (RelbankHttp,),
        {
            "header_timeout": settings.header_timeout_seconds,
            "max_connections": settings.max_connections,
        },
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=None,  # levels come from the root logger (service.logs.configure)
        access_log=False,  # service.api.middleware writes it, with the request id
        log_config=None,  # uvicorn's loggers propagate to the handler logs.configure installed
        proxy_headers=True,
        http=protocol,
        ws="none",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
