"""Several members of the consumer group in one process (RELBANK_CONSUMER_MEMBERS); started by
`consumer.run_consumer`.

Each member is a whole consumer (`consumer.KafkaIngest`): its own Kafka client, partitions,
stored offsets and batches, exactly as if it ran in a process of its own, so it is as safe as
running more processes. They share the event loop and the database pool: while PostgreSQL applies
one member's batch, Python fetches, decodes and weighs another's. The group gives each member a
share of the partitions, so the partition count bounds how many do work.

What the members report, they report together: /readyz names `kafka` or `consumer` while any
member has a reason (each reason prefixed with its member when there are several), and the
progress gauge is the oldest of their last progress, so one stuck member is not hidden by the
others.
"""

from __future__ import annotations

import time

from service import metrics


class Members:
    """The readiness and progress the members of one process share."""

    def __init__(self, not_ready: dict[str, str], count: int) -> None:
        self.not_ready = not_ready  # Runtime.not_ready
        self.count = count
        self._reasons: dict[str, dict[int, str]] = {}
        self._progress = dict.fromkeys(range(count), time.time())
        metrics.CONSUMER_LAST_PROGRESS.set(min(self._progress.values()))

    def reason(self, key: str, member: int) -> str | None:
        return self._reasons.get(key, {}).get(member)

    def report(self, key: str, member: int, reason: str | None) -> None:
        """Member `member`'s reason to be not ready under `key` (None: it has none)."""
        found = self._reasons.setdefault(key, {})
        if reason is None:
            found.pop(member, None)
        else:
            found[member] = reason
        if not found:
            self.not_ready.pop(key, None)
        elif self.count == 1:
            self.not_ready[key] = found[0]
        else:
            self.not_ready[key] = "; ".join(f"member {m + 1}: {found[m]}" for m in sorted(found))

    def progressed(self, member: int, at: float) -> None:
        self._progress[member] = at
        metrics.CONSUMER_LAST_PROGRESS.set(min(self._progress.values()))
