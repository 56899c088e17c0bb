"""`relbank serve --role consumer` as a child process, to signal, kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from service.embedded import free_port
from service.settings import Settings
from tests.support.waiting import LEFTOVERS

ROOT = Path(__file__).resolve().parents[2]


class ConsumerProcess:
    """`relbank serve --role consumer` as a child process, with its own HTTP port (/readyz).

    One member of the group per process unless `env` says otherwise: these tests are about
    instances (tests/kafka/test_members.py is about several in one process)."""

    def __init__(self, settings: Settings, log_dir: Path, name: str, **env: str) -> None:
        LEFTOVERS.append(self)
        self.settings = settings
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "RELBANK_DATABASE_URL": settings.database_url,
            "RELBANK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "RELBANK_INPUT_TOPIC": settings.input_topic,
            "RELBANK_DLQ_TOPIC": settings.dlq_topic,
            "RELBANK_ALERTS_TOPIC": settings.alerts_topic,
            "RELBANK_CONSUMER_GROUP": settings.consumer_group,
            "RELBANK_CONSUMER_MAX_RECORDS": str(settings.consumer_max_records),
            "RELBANK_CONSUMER_SESSION_TIMEOUT_SECONDS": str(
                settings.consumer_session_timeout_seconds
            ),
            "RELBANK_AUTH": "disabled",
            "RELBANK_PORT": str(self.port),
            "RELBANK_LOG_LEVEL": "INFO",
            "RELBANK_CONSUMER_MEMBERS": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from service.cli import main; main(sys.argv[1:])",
                    "serve",
                    "--role",
                    "consumer",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM and wait for a clean shutdown (uvicorn re-raises SIGTERM once it is done, so
        the exit status is -SIGTERM); fail if it does not go."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM in {timeout}s") from None
        log = self.log()
        assert self.process.returncode in (0, -signal.SIGTERM), log[-3000:]
        assert log.rstrip().endswith(f"Finished server process [{self.process.pid}]"), log[-3000:]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{self.port}/readyz")
        return response.status_code, response.json()
