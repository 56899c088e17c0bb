"""`relbank bench`: load generation and measurement, against an embedded PostgreSQL and broker
(the default when no broker is configured) or the configured ones.

Modes: `kafka`, `http`, `read`, `baseline` (ORM, one transaction per event), `limit` (raw COPY
of the same rows), and `all` (every mode in one run, with the ratios between them). Each prints
a table, and with `--json FILE` writes the figures as JSON. Against a real deployment a run
writes events of sources `bench-<run>-*` for customers of the same prefix (the baseline and the
limit write to scratch schemas they drop), on topics and a consumer group of its own.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # building the parser must stay light: `relbank --help` imports this module
    from service.tools.bench.env import Target
    from service.tools.bench.report import Report


async def _run(args: argparse.Namespace, tgt: Target, report: Report) -> None:
    from service.domain.policy import load_policy
    from service.settings import load_settings
    from service.tools.bench import suite

    policy = load_policy(load_settings().policy)
    if args.kind == "all":
        await suite.run_all(tgt, policy, args, report)
    else:
        report.rows += await suite.MODES[args.kind](tgt, policy, args)


def run(args: argparse.Namespace) -> Report:
    """Run the chosen mode, print its table (and write --json); the report."""
    from service.tools.bench.env import run_loop, target
    from service.tools.bench.report import Report

    for name in ("aiokafka", "httpx", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    report = Report(command=shlex.join(["relbank", *sys.argv[1:]]))
    with target(embedded=args.embedded, database_url=args.database_url) as tgt:
        run_loop(_run(args, tgt, report))
    print(f"relbank bench {args.kind}")
    report.print()
    if args.json:
        report.write_json(args.json)
    return report


def _common(p: argparse.ArgumentParser, events: int, customers: int) -> None:
    p.add_argument(
        "--embedded",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="own PostgreSQL and broker (default: when no broker nor --database-url is given)",
    )
    p.add_argument("--database-url", help="PostgreSQL to use (default: RELBANK_DATABASE_URL)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--events", type=int, default=events)
    p.add_argument("--customers", type=int, default=customers)
    p.set_defaults(func=run)


# The modes `bench all` runs, in this order.
ALL_MODES = ("limit", "baseline", "kafka", "http", "read")


def _modes(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(ALL_MODES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(ALL_MODES)}; not {unknown}")
    return chosen


def _http_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=500, help="events per request")
    p.add_argument("--concurrency", type=int, default=4, help="clients posting batches")
    p.add_argument("--singles", type=int, default=3000, help="events posted one by one")
    p.add_argument("--singles-concurrency", type=int, default=64)


def _read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accounts", type=int, default=100_000, help="accounts to read from")
    p.add_argument("--read-rate", type=float, default=500, help="GET /v1/customers/{id} per s")
    p.add_argument("--list-rate", type=float, default=20, help="at-risk and alert-feed reads per s")
    p.add_argument("--seconds", type=float, default=20)


_MEMBERS = "group members per consumer process (default: RELBANK_CONSUMER_MEMBERS)"


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="load generation and measurement (see --help)")
    kinds = bench.add_subparsers(dest="kind", required=True)

    kafka = kinds.add_parser("kafka", help="Kafka → ledger throughput")
    _common(kafka, 100_000, 10_000)
    kafka.add_argument("--partitions", type=int, default=3)
    kafka.add_argument("--instances", type=int, default=1, help="consumer processes")
    kafka.add_argument("--members", type=int, help=_MEMBERS)

    http = kinds.add_parser("http", help="HTTP ingest: batches and single events")
    _common(http, 20_000, 5_000)
    _http_options(http)

    read = kinds.add_parser("read", help="read latency while ingesting at a fixed rate")
    _common(read, 0, 5_000)
    _read_options(read)
    read.add_argument("--ingest-rate", type=float, default=1000, help="events per second")

    baseline = kinds.add_parser("baseline", help="ORM, one transaction per event")
    _common(baseline, 3_000, 1_000)

    limit = kinds.add_parser("limit", help="raw COPY of the same rows")
    _common(limit, 100_000, 10_000)
    limit.add_argument("--batch", type=int, default=1000, help="events per transaction")

    everything = kinds.add_parser("all", help="every mode in one run, and their ratios")
    _common(everything, 100_000, 10_000)
    _http_options(everything)
    _read_options(everything)
    everything.add_argument("--partitions", type=int, default=3)
    everything.add_argument("--members", type=int, help=_MEMBERS)
    everything.add_argument("--baseline-events", type=int, default=3_000)
    everything.add_argument("--http-events", type=int, default=20_000)
    everything.add_argument(
        "--max-records", type=int, default=1000, help="limit's batch (the consumer's)"
    )
    everything.add_argument(
        "--modes",
        type=_modes,
        default=_modes(",".join(ALL_MODES)),
        help=f"the modes to run, comma-separated (default: {','.join(ALL_MODES)})",
    )
    everything.add_argument(
        "--ingest-rate", type=float, default=1000, help="read's ingest rate without kafka"
    )
