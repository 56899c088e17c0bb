"""API keys for the tests: a keys file of four roles, and their bearer headers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

KEYS = {
    "writer": "w-secret-key",
    "reader": "r-secret-key",
    "boss": "a-secret-key",
    "prometheus": "m-secret-key",
}


SCOPES = {
    "writer": ["events:write"],
    "reader": ["read"],
    "boss": ["admin"],
    "prometheus": ["metrics"],
}


def write_keys_file(*, directory: Path) -> Path:
    path = directory / "api-keys.yaml"
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "name": name,
                    "sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "scopes": SCOPES[name],
                }
                for name, key in KEYS.items()
            ]
        ),
        encoding="utf-8",
    )
    return path


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}
