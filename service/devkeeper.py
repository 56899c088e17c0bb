"""`relbank dev` keeps its embedded PostgreSQL and broker running: one that dies (killed, out of
memory) is started again on the same data, socket and port, so the service recovers by itself
as it does when a real database or broker comes back. The broker comes back empty: it keeps its
log in memory, and the consumer knows a new log by its new identity."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.devfolder import DevFolder
from service.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    create_topics,
    port_free,
    start_broker,
)
from service.settings import Settings

CHECK_EVERY = 1.0  # seconds: how soon a dead part is noticed


def say(line: str) -> None:
    print(f"relbank dev: {line}", file=sys.stderr, flush=True)


@dataclass
class Parts:
    """What `relbank dev` started; the keeper replaces `broker` when it starts a new one."""

    postgres: EmbeddedPostgres
    broker: EmbeddedBroker | None = None

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()


class Keeper:
    def __init__(self, parts: Parts, folder: DevFolder, settings: Settings) -> None:
        self.parts = parts
        self.folder = folder
        self.settings = settings
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relbank-dev-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the parts are stopped, so none is started again)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        failing: dict[str, str] = {}
        while not self._stopping.wait(CHECK_EVERY):
            for what, dead, restart in self._checks():
                if not dead():
                    continue
                if what not in failing:
                    say(f"the embedded {what} stopped; starting it again")
                try:
                    restart()
                except Exception as exc:  # anything: it is tried again on the next check
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    if failing.get(what) != error:
                        say(f"starting the embedded {what} failed ({error}); trying again")
                    failing[what] = error
                else:
                    failing.pop(what, None)
                    say(f"the embedded {what} is running again")

    def _checks(self) -> list[tuple[str, Callable[[], bool], Callable[[], None]]]:
        checks: list[tuple[str, Callable[[], bool], Callable[[], None]]] = [
            ("PostgreSQL", lambda: not self.parts.postgres.alive(), self.parts.postgres.restart)
        ]
        broker = self.parts.broker
        if broker is not None:
            checks.append(("broker", lambda: not broker.alive(), self._restart_broker))
        return checks

    def _restart_broker(self) -> None:
        old = self.parts.broker
        assert old is not None
        port = int(old.bootstrap.rsplit(":", 1)[1])
        # Every part of the service was configured with this port: come back on it.
        deadline = time.monotonic() + 10
        while not port_free(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} is taken")
            time.sleep(0.2)
        self.parts.broker = start_broker(
            self.folder.path / "broker.log", port=port, state_file=old.state_file
        )
        self.folder.record(broker_pid=self.parts.broker.pid)
        create_topics(self.settings)
