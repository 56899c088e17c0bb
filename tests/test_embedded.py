"""What a killed `relbank dev` left running on its folder is stopped by the next one, and
nothing else is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.embedded import start_broker, stop_leftovers, wait_gone


def test_a_leftover_broker_is_stopped(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker.log", port=0, state_file=tmp_path / "broker.json")
    try:
        assert json.loads((tmp_path / "broker.json").read_text())["pid"] == broker.pid
        stopped = stop_leftovers(tmp_path)
        assert stopped == [f"broker (PID {broker.pid})"]
        assert wait_gone(broker.pid, 30)
        assert not (tmp_path / "broker.json").exists()
    finally:
        broker.stop()


def test_a_process_that_is_not_the_folders_broker_is_left_alone(tmp_path: Path) -> None:
    # A recorded PID reused by an unrelated process (or a record pointing anywhere): not ours.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / "broker.json").write_text(json.dumps({"pid": other.pid, "port": 9092}))
        (tmp_path / "pgdata").mkdir()
        (tmp_path / "pgdata" / "postmaster.pid").write_text(f"{other.pid}\n{tmp_path}\n")
        assert stop_leftovers(tmp_path) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
