"""What the database-derived gauges show, as the application service reads it for the worker."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.ledger import Account


@dataclass(frozen=True, slots=True)
class Gauges:
    counts: dict[str, int]  # accounts by status
    lowest: list[Account]  # the lowest at-risk accounts, up to the gauge limit
    topic_backlog: int  # alerts not yet on the alerts topic
    webhook_backlog: dict[str, int]  # by webhook name

    @property
    def unlisted(self) -> int:
        """At-risk accounts beyond the gauge limit."""
        return max(0, self.counts.get("at_risk", 0) - len(self.lowest))
