"""Schemathesis over the whole OpenAPI document against `relbank serve`, with auth: examples,
coverage, fuzzing and stateful runs through the document's links find no 5xx and no answer that
contradicts the document (status, media type, headers, body schema, Allow, auth).

`positive_data_acceptance` is left out: the document cannot say which opaque cursors this API
handed out, nor that a time must fall in PostgreSQL's range, so a schema-valid request may rightly
get a 422. Each run draws new cases; a failure prints the seed to replay it with."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.live import relbank_serve

ST = str(Path(sys.executable).with_name("st"))
ADMIN_KEY = "schemathesis-admin-key"


@pytest.mark.slow
async def test_the_api_keeps_to_its_openapi_document(
    clean: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    keys.write_text(yaml.safe_dump([{"name": "st", "sha256": digest, "scopes": ["admin"]}]))
    async with relbank_serve(
        RELBANK_DATABASE_URL=database_url,
        RELBANK_AUTH="enabled",
        RELBANK_API_KEYS_FILE=str(keys),
    ) as served:
        run = await asyncio.create_subprocess_exec(
            ST,
            "run",
            f"{served.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "50",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(run.communicate(), 600)
    report = out.decode(errors="replace")
    assert run.returncode == 0, report[-6000:]
    assert "Exception in ASGI application" not in served.log, served.log[-3000:]
