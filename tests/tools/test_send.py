"""`relbank send`: a JSON-lines file to Kafka (structured and binary) or over HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy
from service.errors import CommandFailed
from service.settings import Settings
from service.tools import send
from tests.support.corpus import make_corpus
from tests.support.kafka import dlq_origins, running_consumer
from tests.support.ledger import assert_ledger_matches, wait_consumed


def _write(path: Path, events: list[dict[str, Any]], *extra: bytes) -> Path:
    lines = [orjson.dumps(e) for e in events] + list(extra)
    path.write_bytes(b"\n".join(lines[:10]) + b"\n\n" + b"\n".join(lines[10:]) + b"\n")
    return path


@pytest.mark.slow
async def test_send_to_kafka_in_both_modes(
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    default_policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = kafka_settings
    structured = make_corpus(120, customers=6, seed=51, prefix="s-")
    binary = make_corpus(120, customers=6, seed=52, prefix="b-")
    report = send.Report()
    await send.send_kafka(
        send.read_lines(_write(tmp_path / "s.jsonl", structured, b"{oops")),
        s,
        binary=False,
        report=report,
    )
    assert report.outcomes == {"produced": 121}  # the broken line too: the service judges it
    report = send.Report()
    await send.send_kafka(
        send.read_lines(_write(tmp_path / "b.jsonl", binary, b"{oops")),
        s,
        binary=True,
        report=report,
    )
    # A line that is not JSON cannot become ce_* headers: refused here, not sent.
    assert report.outcomes == {"produced": 120, "rejected": 1}
    async with running_consumer(s, engine, default_policy):
        await wait_consumed(checker, s.consumer_group, 241, within=30)
    await assert_ledger_matches(checker, structured + binary)
    assert list((await dlq_origins(s)).values()) == ["not_json"]


def test_send_over_http_in_batches_with_the_api_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_corpus(25, customers=3, seed=53)
    events[4]["specversion"] = "0.3"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        batch = orjson.loads(request.content)
        results = [
            {"outcome": "rejected", "reason": "bad_specversion", "detail": "must be 1.0"}
            if e["specversion"] != "1.0"
            else {"outcome": "duplicate" if e["id"] == "e7" else "applied"}
            for e in batch
        ]
        return httpx.Response(200, json={"results": results})

    report = send.Report()
    send.send_http(
        send.read_lines(_write(tmp_path / "e.jsonl", events, b"not json")),
        url="http://relbank.test",
        api_key="k3y",
        batch=10,
        report=report,
        transport=httpx.MockTransport(handler),
    )
    assert [len(orjson.loads(r.content)) for r in seen] == [10, 10, 5]
    assert all(r.headers["authorization"] == "Bearer k3y" for r in seen)
    assert all(r.url.path == "/v1/events" for r in seen)
    assert report.outcomes == {"applied": 23, "duplicate": 1, "rejected": 2}
    report.print("to http://relbank.test")
    out, err = capsys.readouterr()
    assert "26 events" in out
    assert "line 5: rejected (bad_specversion)" in err  # line numbers count the file's lines
    assert "line 27: rejected (not_json)" in err


def test_send_command_exits_2_when_some_events_were_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "e.jsonl", make_corpus(3, seed=1), b"nope")

    def fake(lines: Any, **kwargs: Any) -> None:
        for line in lines:
            kwargs["report"].add(line.number, "rejected" if line.error else "applied")

    monkeypatch.setattr(send, "send_http", fake)
    monkeypatch.setattr(send, "_url", lambda given, settings: "http://relbank.test")
    args = argparse.Namespace(file=path, to="http", url=None, api_key=None, binary=False, batch=500)
    with pytest.raises(CommandFailed) as exited:
        send.send(args)
    assert exited.value.code == 2
