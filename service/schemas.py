"""The JSON Schemas of the public contract (README), generated from the domain models.

`schemas/interaction-event.schema.json` and `schemas/policy.schema.json` are checked in; a test
fails when they drift from what this module generates. Regenerate with
`python -m service.schemas [DIRECTORY]` (or, once wired, `relbank schemas`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.domain.envelope import CloudEvent
from service.domain.policy import Policy

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URL = "https://relbank.dev/schemas/"
EVENT_SCHEMA_FILE = "interaction-event.schema.json"
POLICY_SCHEMA_FILE = "policy.schema.json"
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "schemas"


def _with_header(schema: dict[str, Any], file_name: str) -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": SCHEMA_BASE_URL + file_name, **schema}


def event_schema() -> dict[str, Any]:
    """JSON Schema of the interaction-event envelope (a CloudEvents 1.0 structured event)."""
    return _with_header(CloudEvent.model_json_schema(), EVENT_SCHEMA_FILE)


def policy_schema() -> dict[str, Any]:
    """JSON Schema of a weighting policy file."""
    return _with_header(Policy.model_json_schema(), POLICY_SCHEMA_FILE)


def render(schema: dict[str, Any]) -> str:
    """The checked-in text of a schema: sorted keys, indent 2, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, dict[str, Any]]:
    """File name → schema, for every schema this module owns."""
    return {EVENT_SCHEMA_FILE: event_schema(), POLICY_SCHEMA_FILE: policy_schema()}


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory` (created if needed); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, schema in schema_files().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
