"""`relbank bench`: a small smoke run of every mode on the test PostgreSQL and broker.

Benchmarks are not tests: nothing here asserts a speed, only that each mode runs end to end,
applies every event it sends, and reports its figures in the table and the JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.embedded import EmbeddedBroker
from service.tools.bench.env import run_loop

pytestmark = pytest.mark.slow

SMALL = {
    "kafka": ["--events", "2000", "--customers", "300", "--partitions", "2"],
    "http": ["--events", "1500", "--customers", "300", "--singles", "300"],
    "read": ["--accounts", "2000", "--ingest-rate", "200", "--read-rate", "50", "--seconds", "3"],
    "baseline": ["--events", "150", "--customers", "50"],
    "limit": ["--events", "2000", "--customers", "300", "--batch", "500"],
}


def bench(
    kind: str,
    args: list[str],
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    out = tmp_path / f"{kind}.json"
    main(
        ["bench", kind, "--no-embedded", "--database-url", database_url, *args, "--json", str(out)]
    )
    printed = capsys.readouterr().out
    report: dict[str, Any] = json.loads(out.read_text())
    for row in report["rows"]:
        assert row["name"] in printed
        assert row["errors"] == 0, row
    return report


@pytest.fixture
def with_broker(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELBANK_KAFKA_BOOTSTRAP", broker.bootstrap)


@pytest.mark.usefixtures("with_broker")
@pytest.mark.parametrize("kind", sorted(SMALL))
def test_each_mode_runs_and_reports(
    kind: str, tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = bench(kind, SMALL[kind], tmp_path, database_url, capsys)
    rows = report["rows"]
    assert rows
    if kind == "read":
        reads = [r for r in rows if r["name"].startswith("read: GET")]
        assert len(reads) == 3
        assert all(r["p99"] is not None for r in reads)
        assert rows[-1]["events"] == 600  # 200/s for 3 s
    else:
        expected = {"kafka": 2000, "http": 1500, "baseline": 150, "limit": 2000}[kind]
        assert rows[0]["events"] == expected
        assert all(r["rate"] > 0 for r in rows)
    if kind == "kafka":
        # As the consumer reported it when scraped: a small run may be applied between scrapes.
        assert 0 <= rows[0]["peak_lag"] <= expected
        assert rows[0]["rss_mb"] > 0


@pytest.mark.usefixtures("with_broker")
def test_all_gives_every_mode_and_the_ratios(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--events", "2000", "--customers", "300", "--partitions", "2", "--max-records", "500"]
    args += ["--baseline-events", "100", "--http-events", "1000", "--singles", "200"]
    args += ["--accounts", "2000", "--read-rate", "50", "--seconds", "3"]
    report = bench("all", args, tmp_path, database_url, capsys)
    names = [r["name"] for r in report["rows"]]
    for prefix in ("limit", "baseline", "kafka", "http: batches", "http: single", "read: GET"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    ratios = {r["name"]: r["value"] for r in report["ratios"]}
    assert set(ratios) == {
        "Kafka / limit",
        "Kafka / baseline",
        "HTTP batches / limit",
        "HTTP singles / batches",
    }
    assert all(v is not None and v > 0 for v in ratios.values())


@pytest.mark.usefixtures("with_broker")
def test_all_runs_only_the_modes_asked_for(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--events", "1000", "--customers", "200", "--partitions", "2", "--max-records", "500"]
    report = bench("all", [*args, "--modes", "limit,kafka"], tmp_path, database_url, capsys)
    names = [r["name"] for r in report["rows"]]
    assert len(names) == 2
    assert names[0].startswith("limit"), names
    assert names[1].startswith("kafka"), names
    [ratio] = report["ratios"]
    assert ratio["name"] == "Kafka / limit"
    assert ratio["value"] > 0


def test_all_refuses_an_unknown_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "all", "--modes", "limit,nope"])
    assert "nope" in capsys.readouterr().err


def test_the_load_generators_run_on_the_servers_loop() -> None:
    async def running_loop() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(running_loop()).startswith("uvloop")
