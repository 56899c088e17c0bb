"""Typed errors of library code; only `service.cli` turns them into an exit."""

from __future__ import annotations


class StartupError(Exception):
    """Start-up cannot go on, and waiting will not help; the message says what to fix."""


class CommandFailed(Exception):
    """A command could not do what was asked; the message says why, `code` is the exit status."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def summary(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, at most `limit` characters: for logs and readiness."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
