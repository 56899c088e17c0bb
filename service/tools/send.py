"""`relbank send FILE.jsonl [--to kafka|http]`: events from a file, for backfills and trials.

One CloudEvent per line (`-` reads standard input; blank lines are skipped). Over HTTP the lines
go in batches to `POST /v1/events` and every outcome is counted, rejects listed with their line
and reason. To Kafka they are produced to the input topic, keyed by subject, structured (the line
as it is, so the service judges even a broken one) or `--binary` (`ce_*` headers).
Exit status: 0 all accepted, 1 could not deliver, 2 some events were rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from service import devfolder
from service.domain.envelope import MAX_EVENT_BYTES, InvalidEvent, decode_json
from service.errors import CommandFailed
from service.kafka import client, codec
from service.retry import backoff
from service.settings import Settings

_SHOW_REJECTS = 100
# Below the service's default body limit (1 MiB), so a batch is never refused for its size.
_MAX_REQUEST_BYTES = 900_000


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    raw: bytes
    event: Any  # the parsed JSON, or None when the line is not JSON
    error: str | None


def read_lines(path: Path) -> Iterator[Line]:
    stream = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    try:
        for number, raw in enumerate(stream, start=1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                # relbank's own parser: a member named twice is refused here, not collapsed.
                yield Line(number, raw, decode_json(raw), None)
            except InvalidEvent as exc:
                yield Line(number, raw, None, exc.detail)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


class Report:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.rejects: list[str] = []

    def add(
        self, line: int, outcome: str, reason: str | None = None, detail: str | None = None
    ) -> None:
        self.outcomes[outcome] += 1
        if outcome in ("rejected", "conflict"):
            self.rejects.append(f"line {line}: {outcome} ({reason}): {detail}")

    def print(self, what: str) -> None:
        total = sum(self.outcomes.values())
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "nothing"
        print(f"{total} events {what}: {counts}")
        for text in self.rejects[:_SHOW_REJECTS]:
            print(f"  {text}", file=sys.stderr)
        if len(self.rejects) > _SHOW_REJECTS:
            print(f"  ... and {len(self.rejects) - _SHOW_REJECTS} more", file=sys.stderr)


def send_http(
    lines: Iterator[Line],
    *,
    url: str,
    api_key: str | None,
    batch: int,
    report: Report,
    transport: httpx.BaseTransport | None = None,
) -> None:
    headers = {"content-type": "application/cloudevents-batch+json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    with httpx.Client(base_url=url, headers=headers, timeout=60, transport=transport) as http:
        chunk: list[Line] = []

        def flush() -> None:
            if not chunk:
                return
            body = b"[" + b",".join(line.raw for line in chunk) + b"]"
            response = _post(http, body)
            if response.status_code != 200:
                raise CommandFailed(
                    f"{url}/v1/events answered {response.status_code}: "
                    f"{_problem(response)} (lines {chunk[0].number}-{chunk[-1].number})"
                )
            for line, result in zip(chunk, response.json()["results"], strict=True):
                report.add(
                    line.number, result["outcome"], result.get("reason"), result.get("detail")
                )
            chunk.clear()

        size = 0
        for line in lines:
            if line.error is not None:
                report.add(line.number, "rejected", "not_json", line.error)
                continue
            # Measured as relbank measures it: the compact encoding, whatever the padding.
            if (encoded := len(orjson.dumps(line.event))) > MAX_EVENT_BYTES:
                report.add(
                    line.number,
                    "rejected",
                    "too_large",
                    f"event is {encoded} bytes encoded; the limit is {MAX_EVENT_BYTES}",
                )
                continue
            if chunk and (len(chunk) >= batch or size + len(line.raw) > _MAX_REQUEST_BYTES):
                flush()
                size = 0
            chunk.append(line)
            size += len(line.raw) + 1
        flush()


def _post(http: httpx.Client, body: bytes) -> httpx.Response:
    """POST a batch, again after a connection error or a 5xx: a batch is safe to repeat, as
    events are deduplicated by (source, id)."""
    for attempt in range(1, 6):
        try:
            response = http.post("/v1/events", content=body)
        except httpx.TransportError as exc:
            if attempt == 5:
                raise CommandFailed(f"cannot reach {http.base_url}: {exc}") from None
        else:
            if response.status_code < 500 or attempt == 5:
                return response
        time.sleep(backoff(attempt, base=0.5, cap=8))
    raise AssertionError("unreachable")


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("detail") or body.get("title") or body)[:300]


async def send_kafka(
    lines: Iterator[Line], settings: Settings, *, binary: bool, report: Report
) -> None:
    producer = client.make_producer(settings)
    try:
        await producer.start()
        pending: list[asyncio.Future[Any]] = []
        for line in lines:
            if binary:
                if not isinstance(line.event, dict):
                    report.add(line.number, "rejected", "not_json", line.error or "not an object")
                    continue
                key, value, headers = codec.encode_binary(line.event)
            else:
                # The line as it is: the service is the judge, and a broken line lands in the
                # dead-letter topic like any other producer's would.
                event = line.event if isinstance(line.event, dict) else {}
                key, _, headers = codec.encode_structured(event)
                value = line.raw
            pending.append(
                await producer.send(settings.input_topic, value, key=key, headers=headers)
            )
            report.add(line.number, "produced")
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def send(args: argparse.Namespace) -> None:
    settings = devfolder.load_local_settings()
    report = Report()
    lines = read_lines(args.file)
    if args.to == "kafka":
        if not settings.kafka_bootstrap:
            raise CommandFailed(
                "--to kafka needs RELBANK_KAFKA_BOOTSTRAP, or a relbank dev running here"
            )
        asyncio.run(send_kafka(lines, settings, binary=args.binary, report=report))
        report.print(f"to {settings.input_topic} ({'binary' if args.binary else 'structured'})")
    else:
        url = _url(args.url, settings)
        send_http(
            lines, url=url, api_key=args.api_key, batch=max(1, min(args.batch, 1000)), report=report
        )
        report.print(f"to {url}")
    if report.outcomes["rejected"] or report.outcomes["conflict"]:
        raise CommandFailed("some events were rejected or conflicted (see above)", code=2)


def _url(given: str | None, settings: Settings) -> str:
    """--url, else the relbank dev running here, else RELBANK_HOST:RELBANK_PORT; checked before
    the first line is read, so a wrong one is told in one line at once."""
    url = (given or devfolder.api_url() or f"http://{settings.host}:{settings.port}").rstrip("/")
    try:
        httpx.get(f"{url}/healthz", timeout=10)
    except httpx.TransportError as exc:
        where = "--url" if given else "--url unset, nor a relbank dev running here: RELBANK_PORT"
        raise CommandFailed(f"cannot reach {url} ({where}): {exc}") from None
    return url
