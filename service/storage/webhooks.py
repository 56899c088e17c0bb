"""Webhooks: where alerts are POSTed (README), each with its sink row in `alert_sinks`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.storage import sinks
from service.storage.sinks import Cursor, cursor_from


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    url: str
    secret: str
    kinds: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookState:
    """A webhook with its delivery state; `backlog`: alerts of its kinds not delivered yet."""

    webhook: Webhook
    cursor: Cursor
    backlog: int


_WEBHOOK = "name, url, secret, kinds, created_at, updated_at"


def _webhook(r: RowMapping) -> Webhook:
    return Webhook(
        r["name"], r["url"], r["secret"], tuple(r["kinds"]), r["created_at"], r["updated_at"]
    )


async def put(
    conn: AsyncConnection,
    name: str,
    *,
    url: str,
    secret: str | None,
    new_secret: str,
    kinds: Sequence[str],
) -> bool:
    """Create the webhook (with `secret`, else `new_secret`) or change it (keeping its secret
    when `secret` is None); True when it was created. A new webhook starts after the newest
    alert; a changed one keeps its place and retries at once."""
    row = (
        await conn.execute(
            text(
                """
                INSERT INTO webhooks (name, url, secret, kinds)
                VALUES (:name, :url, coalesce(:secret, :new_secret), CAST(:kinds AS text[]))
                ON CONFLICT (name) DO UPDATE SET
                    url = excluded.url,
                    kinds = excluded.kinds,
                    secret = coalesce(:secret, webhooks.secret),
                    updated_at = now()
                RETURNING (xmax = 0) AS created
                """
            ),
            {
                "name": name,
                "url": url,
                "secret": secret,
                "new_secret": new_secret,
                "kinds": list(kinds),
            },
        )
    ).one()
    sink = sinks.webhook_sink(name)
    if row.created:
        await sinks.start(conn, sink, webhook=name)
    else:
        await sinks.retry_now(conn, sink)
    return bool(row.created)


async def one(conn: AsyncConnection, name: str) -> Webhook | None:
    row = (
        await conn.execute(
            text(f"SELECT {_WEBHOOK} FROM webhooks WHERE name = :name"), {"name": name}
        )
    ).first()
    return _webhook(row._mapping) if row else None


async def names(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(text("SELECT name FROM webhooks ORDER BY name"))).scalars())


async def delete(conn: AsyncConnection, name: str) -> bool:
    """Remove a webhook and (by cascade) its sink row; False when there was none."""
    gone = await conn.execute(text("DELETE FROM webhooks WHERE name = :name"), {"name": name})
    return bool(gone.rowcount)


async def states(conn: AsyncConnection, names: Sequence[str] | None = None) -> list[WebhookState]:
    """Webhooks (all, or those named) by name, with their delivery state and backlog."""
    rows = await conn.execute(
        text(
            """
            SELECT w.name, w.url, w.secret, w.kinds, w.created_at, w.updated_at, s.*,
                   (SELECT count(*) FROM alerts a
                    WHERE a.alert_id > s.last_alert_id AND a.kind = ANY(w.kinds)) AS backlog
            FROM webhooks w JOIN alert_sinks s ON s.webhook = w.name
            WHERE CAST(:names AS text[]) IS NULL OR w.name = ANY(CAST(:names AS text[]))
            ORDER BY w.name
            """
        ),
        {"names": list(names) if names is not None else None},
    )
    return [
        WebhookState(_webhook(r._mapping), cursor_from(r._mapping), int(r.backlog)) for r in rows
    ]
