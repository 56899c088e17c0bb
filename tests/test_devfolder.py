"""The folder `relbank dev` owns: one holder at a time, and dev.json for the other commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import devfolder
from service.devfolder import DevFolder
from service.errors import CommandFailed


def test_a_second_claim_is_refused_naming_the_holder(tmp_path: Path) -> None:
    folder = tmp_path / ".relbank"
    with DevFolder.claim(folder) as owned:
        owned.record(api_url="http://127.0.0.1:8123")
        # Another process, as a second `relbank dev` would be (flock is per open file).
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from service.devfolder import DevFolder\n"
                "try:\n    DevFolder.claim(Path(sys.argv[1])).__enter__()\n"
                "except Exception as exc:\n    print(exc)",
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert f"PID {os.getpid()}" in done.stdout
        assert "http://127.0.0.1:8123" in done.stdout
        assert devfolder.running(folder) is not None  # the holder's record is untouched
    assert not (folder / devfolder.INFO).exists()  # gone with its holder
    with DevFolder.claim(folder):  # and the folder is free again
        pass


def test_in_the_same_process_too(tmp_path: Path) -> None:
    with DevFolder.claim(tmp_path), pytest.raises(CommandFailed, match="in use"):
        DevFolder.claim(tmp_path).__enter__()


def _record(folder: Path, **info: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / devfolder.INFO).write_text(json.dumps(info))


def test_other_commands_use_a_running_dev_unless_a_variable_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("RELBANK_DATABASE_URL", "RELBANK_KAFKA_BOOTSTRAP", "RELBANK_HOST", "RELBANK_PORT"):
        monkeypatch.delenv(name, raising=False)
    url = "postgresql+asyncpg://postgres@/postgres?host=/x/pgdata"
    _record(
        tmp_path / ".relbank",
        pid=os.getpid(),
        database_url=url,
        kafka_bootstrap="127.0.0.1:9999",
        api_url="http://127.0.0.1:8123",
    )
    assert devfolder.dev_overrides() == {"database_url": url, "kafka_bootstrap": "127.0.0.1:9999"}
    settings = devfolder.load_local_settings()
    assert settings.database_url == url
    assert settings.kafka_bootstrap == "127.0.0.1:9999"
    assert devfolder.api_url() == "http://127.0.0.1:8123"
    assert "dev.json" in devfolder.origin("database_url")

    monkeypatch.setenv("RELBANK_DATABASE_URL", "postgresql://postgres@db:5432/relbank")
    monkeypatch.setenv("RELBANK_PORT", "8000")
    assert devfolder.dev_overrides() == {"kafka_bootstrap": "127.0.0.1:9999"}
    assert devfolder.load_local_settings().database_url == "postgresql://postgres@db:5432/relbank"
    assert devfolder.origin("database_url") == "RELBANK_DATABASE_URL"
    assert devfolder.api_url() is None


def test_the_record_of_a_dead_dev_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELBANK_DATABASE_URL", raising=False)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _record(tmp_path / ".relbank", pid=int(gone.stdout), database_url="postgresql://x@/y")
    assert devfolder.running() is None
    assert devfolder.dev_overrides() == {}
    assert devfolder.origin("database_url") == "RELBANK_DATABASE_URL unset: the default"


def test_reset_empties_the_folder_but_keeps_it_held(tmp_path: Path) -> None:
    with DevFolder.claim(tmp_path) as owned:
        (tmp_path / "pgdata" / "base").mkdir(parents=True)
        (tmp_path / "broker.log").write_text("old")
        owned.reset()
        assert sorted(p.name for p in tmp_path.iterdir()) == [devfolder.INFO, devfolder.LOCK]
        with pytest.raises(CommandFailed):
            DevFolder.claim(tmp_path).__enter__()
