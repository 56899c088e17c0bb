"""Prometheus metrics (DESIGN §7). Module-level constants; every label set is bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
ACCOUNTS = Gauge("relbank_accounts", "Accounts by status.", ["status"])
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
DLQ = Counter("relbank_dlq_total", "Records sent to the dead-letter topic, by reason.", ["reason"])
OUTBOX_PENDING = Gauge("relbank_outbox_pending", "Outbox rows not yet published.")
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
    ["customer_id"],
)


def count_results(path: str, outcomes: list[str]) -> None:
    for outcome in outcomes:
        EVENTS.labels(path=path, outcome=outcome).inc()


def count_alerts(kinds: list[str]) -> None:
    for kind in kinds:
        ALERTS.labels(kind=kind).inc()
