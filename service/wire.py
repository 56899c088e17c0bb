"""What relbank publishes about an alert: the CloudEvent of the alerts topic and webhooks
(README), and the alert-feed item it carries as `data`."""

from __future__ import annotations

from service.domain.ledger import Alert

# Structured mode: the whole CloudEvent is the body.
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"


def alert_item(alert_id: int, alert: Alert) -> dict[str, object]:
    """An alert as the feed and the alerts topic show it."""
    cause: object = (
        {"source": alert.cause_source, "id": alert.cause_id}
        if alert.cause_source is not None
        else "decay"
    )
    return {
        "alert_id": alert_id,
        "customer_id": alert.customer_id,
        "kind": alert.kind,
        "balance": alert.balance,
        "threshold": alert.threshold,
        "at": alert.at.isoformat().replace("+00:00", "Z"),
        "cause": cause,
    }


def alert_cloudevent(alert_id: int, alert: Alert) -> dict[str, object]:
    """A CloudEvent whose id is the alert id, keyed (on Kafka) by the customer id."""
    return {
        "specversion": "1.0",
        "id": str(alert_id),
        "source": "relbank",
        "type": f"relbank.account.{alert.kind}",
        "subject": alert.customer_id,
        "time": alert.at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": alert_item(alert_id, alert),
    }
