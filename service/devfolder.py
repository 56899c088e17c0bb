"""The folder `relbank dev` owns (README): a lock held for the life of the process, and
`dev.json`, where it records its URLs so that `relbank migrate`, `replay`, `send` and `simulate`
run beside it reach it when no `RELBANK_` variable says otherwise.

Light on purpose: every command imports it, `relbank --help` included.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from service.errors import CommandFailed

if TYPE_CHECKING:
    from service.settings import Settings

DEFAULT = Path(".relbank")  # where commands look for a running `relbank dev`
LOCK = "dev.lock"
INFO = "dev.json"
# The settings a running dev instance supplies, and the variable that overrides each.
SUPPLIED = {"database_url": "RELBANK_DATABASE_URL", "kafka_bootstrap": "RELBANK_KAFKA_BOOTSTRAP"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(folder: Path) -> dict[str, Any]:
    try:
        found = json.loads((folder / INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


@dataclass
class DevFolder:
    """A data folder this process holds: nobody else runs `relbank dev` on it meanwhile."""

    path: Path
    _lock: IO[str]

    @classmethod
    @contextlib.contextmanager
    def claim(cls, path: Path) -> Iterator[DevFolder]:
        """Hold `path` until the block ends; `CommandFailed` naming the holder when another
        `relbank dev` has it. The lock dies with the process, however it ends, so a killed run
        leaves nothing that keeps the next one out."""
        path.mkdir(parents=True, exist_ok=True)
        lock = (path / LOCK).open("a+", encoding="utf-8")  # not inherited by children
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            holder = _read(path)
            raise CommandFailed(
                f"{path} is in use by another relbank dev (PID {holder.get('pid', '?')}, "
                f"{holder.get('api_url', 'URL not known yet')}); stop that one first, or give "
                "this one another --data-dir"
            ) from None
        folder = cls(path, lock)
        try:
            (path / INFO).unlink(missing_ok=True)  # a dead owner's
            folder.record(pid=os.getpid(), data_dir=str(path), state="starting")
            yield folder
        finally:
            (path / INFO).unlink(missing_ok=True)
            lock.close()

    def record(self, **fields: Any) -> None:
        """Merge `fields` into dev.json (replaced whole, so a reader never sees half of it)."""
        info = _read(self.path) | fields
        part = self.path / f".{INFO}.{os.getpid()}"
        part.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        part.replace(self.path / INFO)

    def reset(self) -> None:
        """Delete everything this folder holds but its lock and dev.json."""
        import shutil

        for item in self.path.iterdir():
            if item.name in (LOCK, INFO):
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()


def running(folder: Path = DEFAULT) -> dict[str, Any] | None:
    """What the `relbank dev` holding `folder` recorded, or None when none runs there."""
    info = _read(folder)
    pid = info.get("pid")
    return info if isinstance(pid, int) and _alive(pid) else None


def dev_overrides(
    folder: Path = DEFAULT, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Settings (by field name) of the `relbank dev` running in `folder`, for every one no
    `RELBANK_` variable sets: pass them to `load_settings`. Empty when none runs there."""
    environ = os.environ if environ is None else environ
    info = running(folder) or {}
    return {
        field: info[field]
        for field, variable in SUPPLIED.items()
        if variable not in environ and info.get(field)
    }


def load_local_settings(**overrides: Any) -> Settings:
    """`load_settings`, reaching the `relbank dev` running in this folder where no variable
    says otherwise: the settings loader of every command but `dev` and `serve`."""
    from service.settings import load_settings

    return load_settings(**(dev_overrides() | overrides))


def origin(field: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the value of a supplied setting comes from, for a message naming it."""
    environ = os.environ if environ is None else environ
    variable = SUPPLIED[field]
    if variable in environ:
        return variable
    if field in dev_overrides(environ=environ):
        return f"from {DEFAULT / INFO}, {variable} unset"
    return f"{variable} unset: the default"


def api_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The API of the `relbank dev` running in this folder, unless RELBANK_HOST or
    RELBANK_PORT name another server."""
    environ = os.environ if environ is None else environ
    if "RELBANK_HOST" in environ or "RELBANK_PORT" in environ:
        return None
    url = (running() or {}).get("api_url")
    return url if isinstance(url, str) else None
