"""`relbank serve` as a child process: its environment, start, readiness and log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

# The console script `uv run relbank` runs: the one installed next to this interpreter.
RELBANK = str(Path(sys.executable).with_name("relbank"))


START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(**variables: str) -> dict[str, str]:
    """This environment without any RELBANK_* of its own, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELBANK_")}
    env.update(variables)
    return env


async def start_server(*, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        RELBANK,
        "serve",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.returncode is not None:
            _, err = await process.communicate()
            raise AssertionError(f"server exited {process.returncode}: {err.decode()[-2000:]}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("server never became ready")


async def stderr_at_exit(process: asyncio.subprocess.Process, *, stop: bool) -> str:
    """The server's log once it has exited (after a SIGTERM when `stop`); killed if it hangs."""
    try:
        if stop:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=START_TIMEOUT)
        return err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
