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
    def with_(**changes: object) -> Args:
        return argparse.Namespace(**(vars(args) | changes))

    [lim] = await limit(tgt, policy, with_(batch=args.max_records))
    [base] = await baseline(tgt, policy, with_(events=args.baseline_events))
    [kaf] = await kafka(tgt, policy, args)
    batches, singles = await http(tgt, policy, with_(events=args.http_events))
    reads = await read(tgt, policy, with_(ingest_rate=max(100.0, kaf.rate / 2)))
    report.rows += [lim, base, kaf, batches, singles, *reads]
    report.ratio("Kafka / limit", kaf.name, lim.name, "target >= 0.5 (stretch 0.7)")
    report.ratio("Kafka / baseline", kaf.name, base.name, "target >= 10")
    report.ratio("HTTP batches / limit", batches.name, lim.name, "target >= 0.4")
    report.ratio("HTTP singles / batches", singles.name, batches.name, "target >= 0.3")
