"""The write side: set-based statements for one batch, run inside the caller's transaction.

Lock order, the same for every writer so concurrent writers cannot deadlock on accounts:
  1. consumer offset rows (Kafka path), by (topic, partition);
  2. one transaction-scoped advisory lock per customer, by key;
  3. event store rows (unique (source, id));
  4. the alert-feed lock, last, just before commit.
Nothing here commits: the entry point owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.balance import Projection
from service.domain.envelope import Event
from service.domain.ledger import Account, Alert, Booking, StoredEvent

# Two-int advisory keys live in a key space apart from the one-bigint customer keys.
_ALERT_FEED_LOCK = (0x52424E4B, 1)


def customer_lock_key(customer_id: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "big", signed=True
    )


async def lock_customers(conn: AsyncConnection, customer_ids: Iterable[str]) -> None:
    """Serialise every writer of these accounts until commit, always in ascending key order."""
    keys = sorted({customer_lock_key(c) for c in customer_ids})
    if keys:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )


@dataclass(frozen=True, slots=True)
class ExistingEvent:
    content_hash: bytes
    customer_id: str


async def insert_events(
    conn: AsyncConnection, events: Sequence[Event], *, path: str
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], ExistingEvent]]:
    """Insert the batch (distinct (source, id) pairs, in arrival order) into the event store.

    Returns the seq of each pair that was new, and for each pair that already existed its stored
    hash and customer, so the caller can tell duplicates from conflicts.
    """
    if not events:
        return {}, {}
    rows = await conn.execute(
        text(
            """
            INSERT INTO events (source, event_id, customer_id, type, time, effective_at,
                                received_at, magnitude, content_hash, envelope, path)
            SELECT source, event_id, customer_id, type, time, effective_at, received_at,
                   magnitude, content_hash, CAST(envelope AS jsonb), :path
            FROM unnest(CAST(:source AS text[]), CAST(:event_id AS text[]),
                        CAST(:customer_id AS text[]), CAST(:type AS text[]),
                        CAST(:time AS timestamptz[]), CAST(:effective_at AS timestamptz[]),
                        CAST(:received_at AS timestamptz[]), CAST(:magnitude AS float8[]),
                        CAST(:content_hash AS bytea[]), CAST(:envelope AS text[]))
                 WITH ORDINALITY
                 AS t(source, event_id, customer_id, type, time, effective_at, received_at,
                      magnitude, content_hash, envelope, ord)
            ORDER BY ord
            ON CONFLICT (source, event_id) DO NOTHING
            RETURNING seq, source, event_id
            """
        ),
        {
            "path": path,
            "source": [e.source for e in events],
            "event_id": [e.id for e in events],
            "customer_id": [e.customer_id for e in events],
            "type": [e.type for e in events],
            "time": [e.time for e in events],
            "effective_at": [e.effective_at for e in events],
            "received_at": [e.received_at for e in events],
            "magnitude": [e.magnitude for e in events],
            "content_hash": [e.content_hash for e in events],
            "envelope": [e.encoded.decode() for e in events],
        },
    )
    inserted = {(r.source, r.event_id): r.seq for r in rows}
    missing = [e for e in events if (e.source, e.id) not in inserted]
    existing: dict[tuple[str, str], ExistingEvent] = {}
    if missing:
        found = await conn.execute(
            text(
                """
                SELECT e.source, e.event_id, e.content_hash, e.customer_id
                FROM events e
                JOIN unnest(CAST(:source AS text[]), CAST(:event_id AS text[]))
                     AS k(source, event_id)
                  ON e.source = k.source AND e.event_id = k.event_id
                """
            ),
            {"source": [e.source for e in missing], "event_id": [e.id for e in missing]},
        )
        existing = {
            (r.source, r.event_id): ExistingEvent(bytes(r.content_hash), r.customer_id)
            for r in found
        }
    return inserted, existing


def _account(r: Row[Any]) -> Account:
    return Account(
        customer_id=r.customer_id,
        segment=r.segment,
        projection=Projection(r.ref_balance, r.ref_time),
        status=r.status,
        status_since=r.status_since,
        opened_at=r.opened_at,
        last_event_at=r.last_event_at,
        entries=r.entries,
        next_transition_at=r.next_transition_at,
        rank=(r.rank_sign, r.rank_value),
    )


ACCOUNT_COLUMNS = (
    "customer_id, segment, ref_balance, ref_time, status, status_since, opened_at, "
    "last_event_at, entries, next_transition_at, rank_sign, rank_value"
)


async def load_accounts(conn: AsyncConnection, customer_ids: Iterable[str]) -> dict[str, Account]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.execute(
        text(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE customer_id = ANY(CAST(:ids AS text[]))"
        ),
        {"ids": ids},
    )
    return {r.customer_id: _account(r) for r in rows}


async def save_accounts(conn: AsyncConnection, accounts: Sequence[Account]) -> None:
    if not accounts:
        return
    await conn.execute(
        text(
            f"""
            INSERT INTO accounts ({ACCOUNT_COLUMNS}, updated_at)
            SELECT *, now() FROM unnest(
                CAST(:customer_id AS text[]), CAST(:segment AS text[]),
                CAST(:ref_balance AS float8[]), CAST(:ref_time AS timestamptz[]),
                CAST(:status AS text[]), CAST(:status_since AS timestamptz[]),
                CAST(:opened_at AS timestamptz[]), CAST(:last_event_at AS timestamptz[]),
                CAST(:entries AS int[]), CAST(:next_transition_at AS timestamptz[]),
                CAST(:rank_sign AS smallint[]), CAST(:rank_value AS float8[]))
            ON CONFLICT (customer_id) DO UPDATE SET
                segment = EXCLUDED.segment, ref_balance = EXCLUDED.ref_balance,
                ref_time = EXCLUDED.ref_time, status = EXCLUDED.status,
                status_since = EXCLUDED.status_since, last_event_at = EXCLUDED.last_event_at,
                entries = EXCLUDED.entries, next_transition_at = EXCLUDED.next_transition_at,
                rank_sign = EXCLUDED.rank_sign, rank_value = EXCLUDED.rank_value,
                updated_at = now()
            """
        ),
        {
            "customer_id": [a.customer_id for a in accounts],
            "segment": [a.segment for a in accounts],
            "ref_balance": [a.projection.ref_balance for a in accounts],
            "ref_time": [a.projection.ref_time for a in accounts],
            "status": [a.status for a in accounts],
            "status_since": [a.status_since for a in accounts],
            "opened_at": [a.opened_at for a in accounts],
            "last_event_at": [a.last_event_at for a in accounts],
            "entries": [a.entries for a in accounts],
            "next_transition_at": [a.next_transition_at for a in accounts],
            "rank_sign": [a.rank[0] for a in accounts],
            "rank_value": [a.rank[1] for a in accounts],
        },
    )


async def insert_entries(conn: AsyncConnection, booking: Booking) -> None:
    entries = booking.entries
    if not entries:
        return
    await conn.execute(
        text(
            """
            INSERT INTO ledger_entries (customer_id, event_seq, source, event_id, type, pillar,
                                        amount, effective_at, policy_version, outcome, reason)
            SELECT * FROM unnest(
                CAST(:customer_id AS text[]), CAST(:event_seq AS bigint[]),
                CAST(:source AS text[]), CAST(:event_id AS text[]), CAST(:type AS text[]),
                CAST(:pillar AS text[]), CAST(:amount AS float8[]),
                CAST(:effective_at AS timestamptz[]), CAST(:policy_version AS text[]),
                CAST(:outcome AS text[]), CAST(:reason AS text[]))
            """
        ),
        {
            "customer_id": [e.customer_id for e in entries],
            "event_seq": [e.event_seq for e in entries],
            "source": [e.source for e in entries],
            "event_id": [e.id for e in entries],
            "type": [e.type for e in entries],
            "pillar": [e.pillar for e in entries],
            "amount": [e.amount for e in entries],
            "effective_at": [e.effective_at for e in entries],
            "policy_version": [e.policy_version for e in entries],
            "outcome": [e.outcome for e in entries],
            "reason": [e.reason for e in entries],
        },
    )


def alert_cloudevent(alert_id: int, alert: Alert) -> dict[str, object]:
    """The alerts-topic payload (DESIGN §6): a CloudEvent whose id is the alert id."""
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


async def insert_alerts(
    conn: AsyncConnection, alerts: Sequence[Alert], *, alerts_topic: str
) -> list[int]:
    """Write alerts and their outbox rows; ids are handed out under a lock held to commit,
    so alert ids become visible in id order and a poller of `after=` never skips one."""
    if not alerts:
        return []
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"), dict(zip("ab", _ALERT_FEED_LOCK, strict=True))
    )
    rows = await conn.execute(
        text(
            """
            INSERT INTO alerts (customer_id, kind, balance, threshold, at, cause_source, cause_id)
            SELECT customer_id, kind, balance, threshold, at, cause_source, cause_id
            FROM unnest(CAST(:customer_id AS text[]), CAST(:kind AS text[]),
                        CAST(:balance AS float8[]), CAST(:threshold AS float8[]),
                        CAST(:at AS timestamptz[]), CAST(:cause_source AS text[]),
                        CAST(:cause_id AS text[])) WITH ORDINALITY
                 AS t(customer_id, kind, balance, threshold, at, cause_source, cause_id, ord)
            ORDER BY ord
            RETURNING alert_id
            """
        ),
        {
            "customer_id": [a.customer_id for a in alerts],
            "kind": [a.kind for a in alerts],
            "balance": [a.balance for a in alerts],
            "threshold": [a.threshold for a in alerts],
            "at": [a.at for a in alerts],
            "cause_source": [a.cause_source for a in alerts],
            "cause_id": [a.cause_id for a in alerts],
        },
    )
    ids = sorted(r.alert_id for r in rows)
    await conn.execute(
        text(
            """
            INSERT INTO outbox (topic, key, payload)
            SELECT :topic, k, CAST(p AS jsonb)
            FROM unnest(CAST(:key AS text[]), CAST(:payload AS text[])) AS t(k, p)
            """
        ),
        {
            "topic": alerts_topic,
            "key": [a.customer_id for a in alerts],
            "payload": [
                orjson.dumps(alert_cloudevent(i, a)).decode()
                for i, a in zip(ids, alerts, strict=True)
            ],
        },
    )
    return ids


async def write_booking(conn: AsyncConnection, booking: Booking, *, alerts_topic: str) -> list[int]:
    await insert_entries(conn, booking)
    await save_accounts(conn, list(booking.accounts.values()))
    return await insert_alerts(conn, booking.alerts, alerts_topic=alerts_topic)


def stored_event(seq: int, event: Event) -> StoredEvent:
    return StoredEvent(
        seq=seq,
        source=event.source,
        id=event.id,
        type=event.type,
        customer_id=event.customer_id,
        effective_at=event.effective_at,
        data=event.data,
        magnitude=event.magnitude,
    )


async def lock_for_replay(conn: AsyncConnection) -> None:
    """Hold off every writer (readers go on) while the projections are rebuilt; tables are taken
    in the order writers touch them, so a writer already inside its transaction cannot deadlock
    with the replay."""
    await conn.execute(
        text("LOCK TABLE events, ledger_entries, accounts, alerts IN SHARE ROW EXCLUSIVE MODE")
    )


async def clear_ledger(conn: AsyncConnection) -> None:
    await conn.execute(text("DELETE FROM ledger_entries"))


async def event_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())


async def events_after(conn: AsyncConnection, after_seq: int, limit: int) -> list[StoredEvent]:
    """The event store in arrival order, a page at a time."""
    rows = await conn.execute(
        text(
            "SELECT seq, source, event_id, type, customer_id, effective_at, magnitude, "
            "envelope -> 'data' AS data FROM events WHERE seq > :after ORDER BY seq LIMIT :n"
        ),
        {"after": after_seq, "n": limit},
    )
    return [
        StoredEvent(
            seq=r.seq,
            source=r.source,
            id=r.event_id,
            type=r.type,
            customer_id=r.customer_id,
            effective_at=r.effective_at,
            data=r.data if isinstance(r.data, dict) else None,
            magnitude=r.magnitude,
        )
        for r in rows
    ]


async def all_accounts(conn: AsyncConnection) -> dict[str, Account]:
    rows = await conn.execute(text(f"SELECT {ACCOUNT_COLUMNS} FROM accounts"))
    return {r.customer_id: _account(r) for r in rows}


async def due_customers(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT customer_id FROM accounts WHERE next_transition_at <= :now "
            "ORDER BY next_transition_at LIMIT :n"
        ),
        {"now": now, "n": limit},
    )
    return [r.customer_id for r in rows]
