"""Alert sinks: where each consumer of the alerts table (the alerts topic, each webhook) is.

A sink's row holds the id of the last alert it has delivered (or given up on) and the state of
its retries. A relay claims the row for the length of a transaction (`claim`), so one relay at a
time decides for a sink, across instances, and a busy sink holds back no other. A webhook's
relay then takes a lease (`lease`) for the one delivery it makes outside any transaction, and
records the outcome only while it still holds the lease at the same place (`Fence`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

KAFKA = "kafka"


def webhook_sink(name: str) -> str:
    return f"webhook:{name}"


@dataclass(frozen=True, slots=True)
class Cursor:
    sink: str
    last_alert_id: int
    attempts: int = 0
    next_attempt_at: datetime | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    given_up: int = 0
    last_given_up_at: datetime | None = None
    lease_owner: str | None = None
    leased_until: datetime | None = None

    def leased_to_another(self, owner: str, now: datetime) -> bool:
        return (
            self.lease_owner not in (None, owner)
            and self.leased_until is not None
            and self.leased_until > now
        )


@dataclass(frozen=True, slots=True)
class Fence:
    """An outcome counts only if `owner` still holds the lease and the sink is still after
    alert `after` (else another relay took over and delivers that alert again)."""

    owner: str
    after: int


_FIELDS = tuple(f.name for f in fields(Cursor))
_COLUMNS = ", ".join(_FIELDS)


def cursor_from(row: RowMapping) -> Cursor:
    """The cursor in a row that has (at least) the columns of `alert_sinks`."""
    return Cursor(**{f: row[f] for f in _FIELDS})


async def start(conn: AsyncConnection, sink: str, *, webhook: str | None = None) -> None:
    """A new sink, from the alert after the newest one (a new webhook gets what comes next)."""
    await conn.execute(
        text(
            "INSERT INTO alert_sinks (sink, webhook, last_alert_id) "
            "SELECT :sink, :webhook, coalesce(max(alert_id), 0) FROM alerts"
        ),
        {"sink": sink, "webhook": webhook},
    )


async def claim(conn: AsyncConnection, sink: str, *, create: bool = False) -> Cursor | None:
    """The sink's row, locked until commit; None while another transaction holds it (or when
    there is none). `create`: a missing row is made first, from the first alert."""
    if create:
        await conn.execute(
            text(
                "INSERT INTO alert_sinks (sink, last_alert_id) VALUES (:sink, 0) "
                "ON CONFLICT (sink) DO NOTHING"
            ),
            {"sink": sink},
        )
    row = (
        await conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM alert_sinks WHERE sink = :sink "
                "FOR NO KEY UPDATE SKIP LOCKED"
            ),
            {"sink": sink},
        )
    ).first()
    return cursor_from(row._mapping) if row else None


async def exists(conn: AsyncConnection, sink: str) -> bool:
    found = await conn.execute(text("SELECT 1 FROM alert_sinks WHERE sink = :sink"), {"sink": sink})
    return found.first() is not None


async def _update(
    conn: AsyncConnection, sink: str, sets: str, params: dict[str, object], fence: Fence | None
) -> bool:
    """UPDATE one sink's row with `sets`; with a `fence`, only while it holds (releasing the
    lease). False when nothing changed."""
    where = "sink = :sink"
    if fence is not None:
        sets += ", lease_owner = NULL, leased_until = NULL"
        where += " AND lease_owner = :owner AND last_alert_id = :after"
        params = {**params, "owner": fence.owner, "after": fence.after}
    found = await conn.execute(
        text(f"UPDATE alert_sinks SET {sets} WHERE {where}"), {**params, "sink": sink}
    )
    return bool(found.rowcount)


async def delivered(
    conn: AsyncConnection, sink: str, *, through: int, at: datetime, fence: Fence | None = None
) -> bool:
    """Everything up to alert `through` is delivered: the retry state is cleared."""
    return await _update(
        conn,
        sink,
        "last_alert_id = :through, attempts = 0, next_attempt_at = NULL, "
        "failing_since = NULL, last_success_at = :at",
        {"through": through, "at": at},
        fence,
    )


async def lease(conn: AsyncConnection, sink: str, *, owner: str, until: datetime) -> None:
    """`owner` delivers for the sink until `until` (on a row the caller has claimed)."""
    await conn.execute(
        text(
            "UPDATE alert_sinks SET lease_owner = :owner, leased_until = :until WHERE sink = :sink"
        ),
        {"sink": sink, "owner": owner, "until": until},
    )


async def skipped(conn: AsyncConnection, sink: str, *, through: int) -> None:
    """Alerts up to `through` are not for this sink (kinds it does not want)."""
    await conn.execute(
        text("UPDATE alert_sinks SET last_alert_id = :through WHERE sink = :sink"),
        {"sink": sink, "through": through},
    )


async def failed(
    conn: AsyncConnection,
    sink: str,
    *,
    error: str,
    at: datetime,
    retry_at: datetime,
    fence: Fence | None = None,
) -> bool:
    return await _update(
        conn,
        sink,
        "attempts = attempts + 1, next_attempt_at = :retry_at, "
        "failing_since = coalesce(failing_since, :at), last_error = :error, last_error_at = :at",
        {"error": error, "at": at, "retry_at": retry_at},
        fence,
    )


async def gave_up(
    conn: AsyncConnection, sink: str, *, through: int, count: int, at: datetime
) -> None:
    """Alerts up to `through` (`count` of them for this sink) are given up on; the retries go
    on with the next one."""
    await conn.execute(
        text(
            "UPDATE alert_sinks SET last_alert_id = :through, given_up = given_up + :count, "
            "last_given_up_at = :at WHERE sink = :sink"
        ),
        {"sink": sink, "through": through, "count": count, "at": at},
    )


async def retry_now(conn: AsyncConnection, sink: str) -> None:
    """The next attempt is due at once (the sink was reconfigured); a delivery in flight to the
    old configuration is not recorded."""
    await conn.execute(
        text(
            "UPDATE alert_sinks SET next_attempt_at = NULL, attempts = 0, lease_owner = NULL, "
            "leased_until = NULL WHERE sink = :sink"
        ),
        {"sink": sink},
    )


async def backlog(conn: AsyncConnection, sink: str) -> int:
    """Alerts the sink has not had yet (all of them before it ever ran)."""
    found = await conn.execute(
        text(
            "SELECT count(*) FROM alerts WHERE alert_id > "
            "coalesce((SELECT last_alert_id FROM alert_sinks WHERE sink = :sink), 0)"
        ),
        {"sink": sink},
    )
    return int(found.scalar_one())
