"""Logging for every process: one format for relbank's and uvicorn's loggers, `text` or `json`
(`RELBANK_LOG_FORMAT`), each record carrying the id of the request it was written for.

Tracebacks are for the unexpected: `failure()` writes one line for what the surroundings did (a
database or broker that does not answer, a bad setting) and a traceback for anything else.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

import orjson
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from service.errors import CommandFailed, StartupError, summary
from service.settings import SettingsError

# The id of the HTTP request being served (set by service.api.middleware), else None.
REQUEST_ID: ContextVar[str | None] = ContextVar("relbank_request_id", default=None)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",  # uvicorn's copy of the message with ANSI colours
}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _WithRequestId(logging.Filter):
    """Stamp the current request id on the record, where the handler sees the caller's
    context (the formatter may run later, elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class Repeats(logging.Filter):
    """aiokafka logs each failed connection attempt, dozens a second while a broker is down: let
    each of its messages through once per `every` seconds, saying how many were held back."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        # (logger, message template) → (when last let through, held back since); templates are
        # few, so this stays small.
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        last, held = self._seen.get(key, (None, 0))
        if last is not None and record.created - last < self.every:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it held back)"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id (in a request), the
    record's `extra=` fields, and exc (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            out["request_id"] = request_id
        out.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message [request_id=...]`, the same for relbank and uvicorn."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if request_id := getattr(record, "request_id", None):
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler `configure` installs; a marker so that a second call replaces it."""


def configure(
    level: str = "INFO", fmt: Literal["text", "json"] = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every logger's records, uvicorn's included, to `stream` (stderr) in one format;
    returns the handler. Run uvicorn with `log_config=None`, so it adds no handlers of its own."""
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_WithRequestId())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic announces each of its plugins at INFO on every `relbank migrate`.
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    logging.getLogger("alembic.runtime.plugins").setLevel(quiet)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


# Connection exception, operator intervention (shutdown), bad credentials, no such database.
_SURROUNDINGS_SQLSTATE = ("08", "57P", "28", "3D000")


def expected(exc: BaseException) -> bool:
    """A failure of the surroundings, not of relbank: a database or broker that does not
    answer, a bad setting. Worth one line; a traceback would only hide it."""
    if isinstance(
        exc,
        SettingsError
        | StartupError
        | CommandFailed
        | OSError
        | TimeoutError
        | KafkaError
        | OperationalError,
    ):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or ""
        return (
            exc.connection_invalidated
            or isinstance(exc, InterfaceError)
            or state.startswith(_SURROUNDINGS_SQLSTATE)
        )
    return False


def failure(
    logger: logging.Logger, message: str, exc: BaseException, *args: object, **extra: Any
) -> None:
    """Log `message % args` with `exc`: one warning line when it is `expected`, an error
    with its traceback when it is not."""
    if expected(exc):
        logger.warning(message + ": %s", *args, summary(exc), extra=extra or None)
    else:
        logger.error(message, *args, exc_info=exc, extra=extra or None)
