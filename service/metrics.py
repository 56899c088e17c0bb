"""Prometheus metrics (README). Module-level constants; every label set is bounded.

Metrics in `REGISTRY` (the default) are served by every process. Those in `WORKER_REGISTRY` are
served only by the roles that run the worker (`worker`, `all`): the database-derived gauges (one
role exports them, so the api and consumer processes run no query for them) and the health of
the sweeper and the relays.
"""

from __future__ import annotations

import collections
import functools
from importlib import metadata

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

WORKER_REGISTRY = CollectorRegistry(auto_describe=True)


def _version() -> str:
    try:
        return metadata.version("relbank")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()

EVENTS = Counter(
    "relbank_events_total", "Events received, by path and outcome.", ["path", "outcome"]
)
APPLY_BATCH_SECONDS = Histogram(
    "relbank_apply_batch_seconds",
    "Time to apply one batch in its transaction.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
APPLY_BATCH_EVENTS = Histogram(
    "relbank_apply_batch_events",
    "Events in one applied batch.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
ACCOUNTS = Gauge("relbank_accounts", "Accounts by status.", ["status"], registry=WORKER_REGISTRY)
ALERTS = Counter("relbank_alerts_total", "Alert transitions raised, by kind.", ["kind"])
CONSUMER_LAG = Gauge(
    "relbank_consumer_lag_records",
    "Records behind the end of each partition.",
    ["topic", "partition"],
)
CONSUMER_LAST_PROGRESS = Gauge(
    "relbank_consumer_last_progress_timestamp_seconds",
    "Unix time the consumer last applied a batch or found nothing to do.",
)
OFFSET_OUT_OF_RANGE = Counter(
    "relbank_consumer_offset_out_of_range_total",
    "Times a stored offset was past the end of its partition (broker lost data).",
    ["topic"],
)
LOG_CHANGED = Counter(
    "relbank_consumer_log_changed_total",
    "Times a partition was read again from its start because its log is not the one the stored "
    "offsets count in (topic re-created, memory-only broker restarted).",
    ["topic"],
)
DLQ = Counter("relbank_dlq_total", "Records sent to the dead-letter topic, by reason.", ["reason"])
OUTBOX_PENDING = Gauge(
    "relbank_outbox_pending",
    "Alerts not yet published to the alerts topic (0 without Kafka).",
    registry=WORKER_REGISTRY,
)
HTTP_REQUESTS = Counter(
    "relbank_http_requests_total", "HTTP requests.", ["route", "method", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "relbank_http_request_seconds",
    "HTTP request latency by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AT_RISK_BALANCE = Gauge(
    "relbank_at_risk_balance",
    "Balance of the lowest at-risk accounts (at most RELBANK_AT_RISK_GAUGE_LIMIT of them).",
    ["customer_id", "segment"],
    registry=WORKER_REGISTRY,
)
POLICY_THRESHOLD = Gauge(
    "relbank_policy_threshold",
    "Thresholds in force: the policy's own (no segment) and each segment's.",
    ["segment", "bound"],
    registry=WORKER_REGISTRY,
)

AT_RISK_UNLISTED = Gauge(
    "relbank_at_risk_unlisted",
    "At-risk accounts left out of relbank_at_risk_balance by RELBANK_AT_RISK_GAUGE_LIMIT.",
    registry=WORKER_REGISTRY,
)
GAUGES_REFRESHED = Gauge(
    "relbank_gauges_refreshed_timestamp_seconds",
    "Unix time the database-derived gauges were last read from the database; they show what "
    "was true then.",
    registry=WORKER_REGISTRY,
)
GAUGE_REFRESH_FAILURES = Counter(
    "relbank_gauge_refresh_failures_total",
    "Times the database-derived gauges could not be refreshed.",
    registry=WORKER_REGISTRY,
)
SWEEPER_LAST_SUCCESS = Gauge(
    "relbank_sweeper_last_success_timestamp_seconds",
    "Unix time the sweeper last completed a sweep.",
    registry=WORKER_REGISTRY,
)
RELAY_LAST_SUCCESS = Gauge(
    "relbank_relay_last_success_timestamp_seconds",
    "Unix time a relay (sink: kafka, webhook) last completed a step without an error of its "
    "own; finding nothing to do counts, a webhook receiver's failure does not stop it.",
    ["sink"],
    registry=WORKER_REGISTRY,
)
WEBHOOK_BACKLOG = Gauge(
    "relbank_webhook_backlog",
    "Alerts of a webhook's kinds not yet delivered to it.",
    ["webhook"],
    registry=WORKER_REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "relbank_webhook_deliveries_total",
    "Webhook delivery attempts, by webhook and outcome (delivered, failed).",
    ["webhook", "outcome"],
    registry=WORKER_REGISTRY,
)
WEBHOOK_GIVEN_UP = Counter(
    "relbank_webhook_given_up_total",
    "Alerts a webhook's relay gave up on after RELBANK_WEBHOOK_GIVE_UP_AFTER_SECONDS of failure.",
    ["webhook"],
    registry=WORKER_REGISTRY,
)

DATABASE_UP = Gauge(
    "relbank_database_up", "1 when PostgreSQL answered this process's last probe, else 0."
)
DB_POOL_CONNECTIONS = Gauge(
    "relbank_db_pool_connections",
    "Connections of this process's database pool, by state (in_use, idle).",
    ["state"],
)
BUILD_INFO = Info("relbank_build", "The running relbank's version (value 1).")
BUILD_INFO.info({"version": VERSION})


def exposition(*, worker: bool) -> bytes:
    """The text format of what a process serves; `worker`: with the worker's metrics."""
    text = generate_latest(REGISTRY)
    return text + generate_latest(WORKER_REGISTRY) if worker else text


@functools.cache
def _request_children(route: str, method: str, status: int) -> tuple[Histogram, Counter]:
    # Bounded: route templates, the methods llhttp parses, HTTP statuses.
    return (
        HTTP_REQUEST_SECONDS.labels(route=route),
        HTTP_REQUESTS.labels(route=route, method=method, status=str(status)),
    )


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    # A labelled child is looked up once (labels() costs more than the observation itself).
    latency, count = _request_children(route, method, status)
    latency.observe(seconds)
    count.inc()


def count_results(path: str, outcomes: list[str]) -> None:
    # Counted first: looking a labelled child up costs more than the rest, per event.
    for outcome, n in collections.Counter(outcomes).items():
        EVENTS.labels(path=path, outcome=outcome).inc(n)


def count_alerts(kinds: list[str]) -> None:
    for kind, n in collections.Counter(kinds).items():
        ALERTS.labels(kind=kind).inc(n)
