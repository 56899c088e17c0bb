"""A real webhook receiver: an HTTP server on a free loopback port, in a thread of its own, that
answers each request as its plan says and records what it was sent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

HANG = 0  # a plan's answer: say nothing until the receiver closes


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: int  # the status answered; HANG for a request left without an answer

    @property
    def event(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """`plan(n)` is the answer to the n-th request (from 1): a status, or HANG."""

    def __init__(self, plan: Callable[[int], int] = lambda n: 204) -> None:
        self.plan = plan
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    answer = receiver.plan(len(receiver.requests) + 1)
                    receiver.requests.append(
                        Request(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, answer
                        )
                    )
                if answer == HANG:
                    receiver._closing.wait(60)
                    return
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/relbank"

    def taken(self) -> list[Request]:
        """The requests answered with a 2xx, in the order they came."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.answer < 300]

    def all(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
