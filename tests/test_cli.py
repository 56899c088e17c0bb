"""The command line as a person meets it: `relbank dev` in a folder of its own (real processes:
the command, its embedded PostgreSQL and broker), and the commands run beside it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from service import devfolder, runtime
from service.cli import ROLES
from service.embedded import _alive, free_port, stop_leftovers

HEAVY = ("sqlalchemy", "fastapi", "uvicorn", "aiokafka", "pydantic", "httpx", "alembic", "yaml")


def _env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELBANK_")}
    env.pop("XDG_RUNTIME_DIR", None)  # so every folder keeps pgserver's files to itself
    env.update(variables)
    return env


def relbank(cwd: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        env=_env(**variables),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _postgres_of(folder: Path) -> list[int]:
    """PIDs of PostgreSQL processes serving `folder`'s data."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and str(folder / "pgdata") in cmdline:
            found.append(int(proc.name))
    return found


def _postmaster(folder: Path) -> int:
    """The PID of the PostgreSQL serving `folder` (its children come and go)."""
    return int((folder / "pgdata" / "postmaster.pid").read_text().split()[0])


def _wait(condition: Any, what: str, seconds: float = 120, *, dev: Dev | None = None) -> None:
    """Poll `condition`; on a timeout, what `dev` printed is part of the failure."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            said = f"\n--- relbank dev printed ---\n{dev.output[-8000:]}" if dev else ""
            raise AssertionError(f"timed out after {seconds}s waiting for {what}{said}")
        time.sleep(0.2)


class Dev:
    """`relbank dev` in a subprocess, in `cwd`, on `cwd/.relbank`."""

    started: ClassVar[list[subprocess.Popen[bytes]]] = []

    def __init__(self, cwd: Path, *args: str, **variables: str) -> None:
        self.cwd = cwd
        self.folder = cwd / ".relbank"
        self.log = cwd / f"dev-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "dev", "--kafka-port", "0", *args],
                cwd=cwd,
                env=_env(**variables),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals go to it alone, as a terminal's Ctrl-C would
            )
        Dev.started.append(self.process)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def info(self) -> dict[str, Any]:
        return devfolder.running(self.folder) or {}

    def wait_running(self) -> dict[str, Any]:
        def running() -> bool:
            assert self.process.poll() is None, f"relbank dev exited:\n{self.output}"
            found = self.info()
            return found.get("pid") == self.process.pid and found.get("state") == "running"

        _wait(running, "relbank dev to run", seconds=240)
        return self.info()

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=120)


@pytest.fixture
def here() -> Iterator[Path]:
    """A folder of its own, outside pytest's private tmp (the embedded PostgreSQL runs as
    another user, who must reach it), cleaned of anything a failed test left running."""
    path = Path(tempfile.mkdtemp(prefix="relbank-cli-"))
    path.chmod(0o755)
    yield path
    while Dev.started:
        process = Dev.started.pop()
        if process.poll() is None:
            process.kill()
            process.wait()
    stop_leftovers(path / ".relbank")
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _nothing_runs_for(folder: Path, broker_pid: int | None) -> None:
    _wait(lambda: not _postgres_of(folder), "the embedded PostgreSQL to stop", seconds=60)
    if broker_pid is not None:
        _wait(lambda: not _alive(broker_pid), "the embedded broker to stop", seconds=60)


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys; from service.cli import _parser; _parser();"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
    shown = relbank(Path.cwd(), "--help")
    assert shown.returncode == 0
    assert "relbank dev --demo" in shown.stdout
    assert ROLES == runtime.ROLES


@pytest.mark.slow
def test_a_bad_policy_stops_dev_before_anything_starts(here: Path) -> None:
    bad = here / "policy.yaml"
    bad.write_text("version: 1\nhalf_life_days: -3\n")
    done = relbank(here, "dev", "--kafka-port", "0", "--port", "0", RELBANK_POLICY=str(bad))
    assert done.returncode != 0
    assert "RELBANK_POLICY" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr
    assert not (here / ".relbank" / "pgdata").exists()
    assert not _postgres_of(here / ".relbank")


@pytest.mark.slow
def test_a_busy_port_is_named_before_anything_heavy_starts(here: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = relbank(here, "dev", "--kafka-port", "0", "--port", str(port))
    assert done.returncode == 1, done.stderr
    assert "--port" in done.stderr, done.stderr
    assert "RELBANK_PORT" in done.stderr
    assert str(port) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (here / ".relbank" / "pgdata").exists()


@pytest.mark.slow
def test_commands_without_a_dev_fail_in_one_line_naming_the_variable(here: Path) -> None:
    nothing = free_port()
    url = f"postgresql://postgres@127.0.0.1:{nothing}/relbank"
    for command in ("migrate", "replay"):
        done = relbank(here, command, RELBANK_DATABASE_URL=url)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"relbank {command}: cannot reach PostgreSQL at 127.0.0.1:{nothing}" in done.stderr
        assert "RELBANK_DATABASE_URL" in done.stderr
    events = here / "events.jsonl"
    events.write_text("{}\n")
    done = relbank(here, "send", str(events), RELBANK_PORT=str(nothing))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot reach http://127.0.0.1:{nothing}" in done.stderr
    assert "--url" in done.stderr
    done = relbank(
        here, "send", "--to", "kafka", str(events), RELBANK_KAFKA_BOOTSTRAP=f"127.0.0.1:{nothing}"
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot reach Kafka at 127.0.0.1:{nothing} (RELBANK_KAFKA_BOOTSTRAP)" in done.stderr


def _write_event(path: Path) -> None:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "crm",
        "type": "promise.kept",
        "subject": "harbor-foods",
        "time": "2026-01-05T10:00:00Z",
    }
    path.write_text(json.dumps(event) + "\n")


@pytest.mark.slow
def test_dev_owns_its_folder_and_the_other_commands_find_it(here: Path) -> None:
    port = free_port()
    first = Dev(here, "--port", str(port))
    info = first.wait_running()
    api = f"http://127.0.0.1:{port}"
    assert info["api_url"] == api
    assert info["ui_url"] == f"{api}/ui/"
    assert info["data_dir"] == str(first.folder)
    postgres, broker = _postmaster(first.folder), info["broker_pid"]
    assert _alive(postgres)
    assert _alive(broker)
    shown = first.output
    for needed in (f"{api}/ui/", str(first.folder), info["kafka_bootstrap"], "memory", "Ctrl-C"):
        assert needed in shown, shown
    assert "--reset" in shown
    assert "consumer, sweeper" in shown
    assert "alembic" not in shown
    assert "aiokafka" not in shown
    assert "Traceback" not in shown

    # A second one on the same folder refuses at once, naming the first, and stops nothing.
    second = relbank(here, "dev", "--kafka-port", "0", "--port", "0")
    assert second.returncode == 1
    assert f"PID {first.process.pid}" in second.stderr
    assert api in second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    assert httpx.get(f"{api}/readyz", timeout=30).status_code == 200
    assert _postmaster(first.folder) == postgres
    assert _alive(postgres)
    assert _alive(broker)
    assert first.info()["pid"] == first.process.pid

    # The other commands, run in the folder, reach it with no variable set.
    assert "the database is at head" in relbank(here, "migrate").stdout
    _write_event(here / "one.jsonl")
    sent = relbank(here, "send", "one.jsonl")
    assert sent.returncode == 0, sent.stderr
    assert api in sent.stdout
    assert httpx.get(f"{api}/v1/customers/harbor-foods", timeout=30).status_code == 200
    replayed = relbank(here, "replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 events" in replayed.stdout

    assert first.stop() == 0
    _nothing_runs_for(first.folder, broker)
    assert not (first.folder / devfolder.INFO).exists()


@pytest.mark.slow
def test_a_killed_dev_leaves_nothing_that_keeps_the_next_one_out(here: Path) -> None:
    killed = Dev(here, "--port", "0")
    info = killed.wait_running()
    old_broker, old_postgres = info["broker_pid"], _postmaster(killed.folder)
    killed.stop(signal.SIGKILL)
    # Its broker and PostgreSQL run in sessions of their own: they outlive it.
    assert _alive(old_broker)
    assert _alive(old_postgres)

    after = Dev(here, "--port", "0")
    info = after.wait_running()
    assert "stopped the broker" in after.output
    assert "stopped the PostgreSQL" in after.output
    assert not _alive(old_broker)
    assert info["broker_pid"] != old_broker
    assert not _alive(old_postgres)
    assert _postmaster(after.folder) != old_postgres
    assert httpx.get(f"{info['api_url']}/readyz", timeout=30).status_code == 200
    assert after.stop(signal.SIGTERM) == 0
    _nothing_runs_for(after.folder, info["broker_pid"])


@pytest.mark.slow
def test_ctrl_c_during_start_up_stops_what_had_started(here: Path) -> None:
    dev = Dev(here, "--port", "0", "--demo")  # the demo keeps start-up busy for a while
    _wait(lambda: "database_url" in dev.info(), "the embedded PostgreSQL to start")
    _wait(lambda: "broker_pid" in dev.info(), "the embedded broker to start")
    broker = dev.info()["broker_pid"]
    assert dev.info()["state"] == "starting"
    assert dev.stop() == 130
    assert "interrupted" in dev.output
    assert "Traceback" not in dev.output
    _nothing_runs_for(dev.folder, broker)


@pytest.mark.slow
def test_a_failure_after_the_embedded_parts_started_stops_them_and_reset_starts_afresh(
    here: Path,
) -> None:
    first = Dev(here, "--port", "0", "--no-kafka")
    first.wait_running()
    _write_event(here / "one.jsonl")
    assert relbank(here, "send", "one.jsonl").returncode == 0
    assert first.stop() == 0
    # The ledger was kept under a 90-day half-life; a policy with another one cannot serve it.
    policy = here / "policy.yaml"
    policy.write_text(
        (Path(__file__).parents[1] / "service" / "default_policy.yaml")
        .read_text()
        .replace("half_life_days: 90", "half_life_days: 30")
    )
    again = Dev(here, "--port", "0", RELBANK_POLICY=str(policy))
    _wait(lambda: "broker_pid" in again.info(), "the embedded broker to start")
    broker = again.info()["broker_pid"]
    assert again.process.wait(timeout=240) != 0
    assert "half" in again.output, again.output
    assert "Traceback" not in again.output, again.output
    _nothing_runs_for(again.folder, broker)

    # --reset starts afresh: no ledger left to disagree with the new policy.
    fresh = Dev(here, "--port", "0", "--no-kafka", "--reset", RELBANK_POLICY=str(policy))
    info = fresh.wait_running()
    missing = httpx.get(f"{info['api_url']}/v1/customers/harbor-foods", timeout=30)
    assert missing.status_code == 404
    assert fresh.stop() == 0


@pytest.mark.slow
def test_dev_starts_its_postgres_or_broker_again_when_one_is_killed(here: Path) -> None:
    dev = Dev(here, "--port", "0")
    info = dev.wait_running()
    api = info["api_url"]
    _write_event(here / "one.jsonl")
    assert relbank(here, "send", "one.jsonl").returncode == 0
    postgres = _postmaster(dev.folder)

    def ready() -> bool:
        return httpx.get(f"{api}/readyz", timeout=30).status_code == 200

    os.kill(postgres, signal.SIGKILL)
    _wait(lambda: "PostgreSQL stopped" in dev.output, "the keeper to notice", dev=dev)
    down = httpx.get(f"{api}/readyz", timeout=30)
    if down.status_code == 503:  # unless the keeper was quicker than this probe
        # Only the database is named: the relay does not blame Kafka for it.
        assert set(down.json()["components"]) <= {"database", "consumer"}, down.text
    _wait(ready, "readiness after PostgreSQL came back", dev=dev)
    assert _postmaster(dev.folder) != postgres
    assert httpx.get(f"{api}/v1/customers/harbor-foods", timeout=30).status_code == 200

    broker = dev.info()["broker_pid"]
    os.kill(broker, signal.SIGKILL)
    _wait(lambda: dev.info().get("broker_pid") not in (None, broker), "a new broker", dev=dev)
    assert _alive(dev.info()["broker_pid"])
    # The new broker, empty, on the same port: an event sent to it is applied.
    event = json.loads((here / "one.jsonl").read_text())
    (here / "two.jsonl").write_text(json.dumps(event | {"id": "e2", "subject": "after"}) + "\n")
    sent = relbank(here, "send", "--to", "kafka", "two.jsonl")
    assert sent.returncode == 0, sent.stderr
    _wait(
        lambda: httpx.get(f"{api}/v1/customers/after", timeout=30).status_code == 200,
        "the event sent to the new broker to be applied",
        dev=dev,
    )
    assert "broker is running again" in dev.output
    assert "Traceback" not in dev.output, dev.output
    new_broker = dev.info()["broker_pid"]
    assert dev.stop() == 0
    _nothing_runs_for(dev.folder, new_broker)
    print(dev.output)
