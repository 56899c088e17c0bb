"""API keys: only their SHA-256 is stored; a presented key is hashed, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import Request

from service.api.problems import Problem

Scope = Literal["events:write", "read", "metrics", "admin"]
SCOPES: frozenset[str] = frozenset({"events:write", "read", "metrics", "admin"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class ApiKeysError(Exception):
    """A keys file that cannot be used; the message names the entry and field."""


def load_api_keys(path: Path) -> list[ApiKey]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ApiKeysError(f"{path}: cannot read API keys: {exc}") from None
    if not isinstance(document, list):
        raise ApiKeysError(f"{path}: must be a YAML list of {{name, sha256, scopes}}")
    keys = []
    for i, entry in enumerate(document):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise ApiKeysError(f"{where}: must be a mapping")
        name, digest, scopes = entry.get("name"), entry.get("sha256"), entry.get("scopes")
        if not isinstance(name, str) or not name:
            raise ApiKeysError(f"{where}: `name` must be a non-empty string")
        if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
            raise ApiKeysError(f"{where} ({name}): `sha256` must be 64 hex digits")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= SCOPES:
            raise ApiKeysError(
                f"{where} ({name}): `scopes` must be a non-empty list from {sorted(SCOPES)}"
            )
        keys.append(ApiKey(name, bytes.fromhex(digest), frozenset(scopes)))
    return keys


class Authenticator:
    def __init__(self, keys: list[ApiKey] | None, *, open_scopes: frozenset[str] = frozenset()):
        """`keys=None` means authentication is disabled; `open_scopes` need no key even so
        (`metrics` with RELBANK_METRICS_AUTH=disabled)."""
        self._keys = keys
        self._open = open_scopes

    def identify(self, authorization: str | None) -> ApiKey | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode()).digest()
        match = None
        # Compare against every key so the time taken does not tell which one matched.
        for key in self._keys or []:
            if hmac.compare_digest(presented, key.digest):
                match = key
        return match

    def check(self, request: Request, scope: Scope) -> None:
        if self._keys is None or scope in self._open:
            return
        key = self.identify(request.headers.get("authorization"))
        if key is None:
            raise Problem(
                401,
                "missing or unknown API key: send `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key.allows(scope):
            raise Problem(403, f"API key {key.name!r} lacks the scope {scope!r}")


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A FastAPI dependency that checks the request's key for `scope`."""

    async def dependency(request: Request) -> None:
        authenticator: Authenticator = request.app.state.authenticator
        authenticator.check(request, scope)

    return dependency
