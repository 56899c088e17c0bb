"""Each mode from its command-line arguments, and `bench all`: every mode in one run on one
PostgreSQL and broker, with the ratios between them (which carry across machines better than
the absolute figures)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from service.domain.policy import Policy
from service.tools.bench.env import Target
from service.tools.bench.http import run_http
from service.tools.bench.kafka import run_kafka
from service.tools.bench.limit import run_baseline, run_limit
from service.tools.bench.read import run_read
from service.tools.bench.report import Report, Row

Args = argparse.Namespace
Mode = Callable[[Target, Policy, Args], Awaitable[list[Row]]]


async def kafka(tgt: Target, policy: Policy, args: Args) -> list[Row]:
    return [
        await run_kafka(
            tgt,
            policy,
            events=args.events,
            customers=args.customers,
            partitions=args.partitions,
            instances=getattr(args, "instances", 1),
            members=args.members,
        )
    ]


async def http(tgt: Target, policy: Policy, args: Args) -> list[Row]:
    return await run_http(
        tgt,
        policy,
        events=args.events,
        customers=args.customers,
        batch=args.batch,
        concurrency=args.concurrency,
        singles=args.singles,
        singles_concurrency=args.singles_concurrency,
    )


async def read(tgt: Target, policy: Policy, args: Args) -> list[Row]:
    return await run_read(
        tgt,
        policy,
        accounts=args.accounts,
        customers=args.customers,
        ingest_rate=args.ingest_rate,
        read_rate=args.read_rate,
        list_rate=args.list_rate,
        seconds=args.seconds,
    )


async def baseline(tgt: Target, policy: Policy, args: Args) -> list[Row]:
    return [await run_baseline(tgt, policy, events=args.events, customers=args.customers)]


async def limit(tgt: Target, policy: Policy, args: Args) -> list[Row]:
    return [
        await run_limit(tgt, policy, events=args.events, customers=args.customers, batch=args.batch)
    ]


MODES: dict[str, Mode] = {
    "kafka": kafka,
    "http": http,
    "read": read,
    "baseline": baseline,
    "limit": limit,
}


async def run_all(tgt: Target, policy: Policy, args: Args, report: Report) -> None:
    """The modes of `--modes` (default: every one) in one run, and the ratios between those
    that ran."""

    def with_(**changes: object) -> Args:
        return argparse.Namespace(**(vars(args) | changes))

    chosen = set(args.modes)
    rows: dict[str, Row] = {}
    if "limit" in chosen:
        [rows["limit"]] = await limit(tgt, policy, with_(batch=args.max_records))
    if "baseline" in chosen:
        [rows["baseline"]] = await baseline(tgt, policy, with_(events=args.baseline_events))
    if "kafka" in chosen:
        [rows["kafka"]] = await kafka(tgt, policy, args)
    if "http" in chosen:
        rows["batches"], rows["singles"] = await http(tgt, policy, with_(events=args.http_events))
    report.rows += rows.values()
    if "read" in chosen:
        rate = rows["kafka"].rate / 2 if "kafka" in rows else args.ingest_rate
        report.rows += await read(tgt, policy, with_(ingest_rate=max(100.0, rate)))

    def ratio(label: str, top: str, bottom: str, target: str) -> None:
        if top in rows and bottom in rows:
            report.ratio(label, rows[top].name, rows[bottom].name, target)

    ratio("Kafka / limit", "kafka", "limit", "target >= 0.5 (stretch 0.7)")
    ratio("Kafka / baseline", "kafka", "baseline", "target >= 10")
    ratio("HTTP batches / limit", "batches", "limit", "target >= 0.4")
    ratio("HTTP singles / batches", "singles", "batches", "target >= 0.3")
