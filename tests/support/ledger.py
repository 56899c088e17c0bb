"""What landed in PostgreSQL, read with plain SQL and held against the oracle: every event
booked once, every balance as `tests.support.oracle` computes it, offsets only moving forward."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.oracle import Book, book_all, decay
from tests.support.waiting import wait_for


def checker_engine(database_url: str) -> AsyncEngine:
    """An engine the tests' `pg_terminate_backend` (on application_name 'relbank') leaves alone."""
    return create_async_engine(
        database_url, connect_args={"server_settings": {"application_name": "relbank-test"}}
    )


async def stored_balances(
    engine: AsyncEngine, at: datetime, half_life_days: float | None
) -> dict[str, float]:
    """B(at) of every account from its stored (ref_balance, ref_time)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT customer_id, ref_balance, ref_time FROM accounts"))
        return {r.customer_id: r.ref_balance * decay(at - r.ref_time, half_life_days) for r in rows}


async def assert_ledger_matches(
    engine: AsyncEngine, corpus: list[dict[str, Any]], *, book: Book | None = None
) -> None:
    """Every event of the corpus booked exactly once (the first of each (source, id)), and every
    balance as the oracle says. `book`: the oracle's book of the corpus, when already made."""
    book = book or book_all(corpus)
    unique = set(book.accepted)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
        entries = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
        twice = (
            await conn.execute(
                text(
                    "SELECT source, event_id FROM ledger_entries GROUP BY source, event_id "
                    "HAVING count(*) > 1 LIMIT 5"
                )
            )
        ).all()
        booked = {
            (r.source, r.event_id)
            for r in await conn.execute(text("SELECT source, event_id FROM ledger_entries"))
        }
    assert not twice, f"(source, id) booked more than once: {twice}"
    assert booked == unique, (
        f"missing {len(unique - booked)} e.g. {sorted(unique - booked)[:5]}; "
        f"unexpected {len(booked - unique)} e.g. {sorted(booked - unique)[:5]}"
    )
    assert stored == len(unique)
    assert entries == len(unique)
    at = datetime.now(UTC)
    expected = book.balances(at)
    actual = await stored_balances(engine, at, book.contract.half_life_days)
    assert actual.keys() == expected.keys()
    wrong = {
        c: (actual[c], expected[c])
        for c in expected
        if not math.isclose(actual[c], expected[c], rel_tol=1e-9, abs_tol=1e-9)
    }
    assert not wrong, (
        f"{len(wrong)} balances differ from the oracle, e.g. {list(wrong.items())[:3]}"
    )


async def applied_offsets(engine: AsyncEngine, group: str) -> int:
    """Records the group has moved past, over all partitions (offsets start at 0)."""
    async with engine.connect() as conn:
        total = (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                    "WHERE consumer_group = :g"
                ),
                {"g": group},
            )
        ).scalar_one()
    return int(total)


async def wait_consumed(engine: AsyncEngine, group: str, records: int, *, within: float) -> None:
    async def done() -> bool:
        return await applied_offsets(engine, group) >= records

    await wait_for(done, within=within, what=f"{records} records consumed by {group}")


OFFSET_AUDIT_SQL = [
    "CREATE TABLE IF NOT EXISTS test_offset_audit (id bigserial PRIMARY KEY, "
    "consumer_group text, topic text, partition int, old bigint, new bigint)",
    "TRUNCATE test_offset_audit",
    """
    CREATE OR REPLACE FUNCTION test_offset_audit() RETURNS trigger AS $$
    BEGIN
      INSERT INTO test_offset_audit (consumer_group, topic, partition, old, new)
      VALUES (NEW.consumer_group, NEW.topic, NEW.partition,
              CASE WHEN TG_OP = 'UPDATE' THEN OLD.next_offset END, NEW.next_offset);
      RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS test_offset_audit ON consumer_offsets",
    "CREATE TRIGGER test_offset_audit AFTER INSERT OR UPDATE ON consumer_offsets "
    "FOR EACH ROW EXECUTE FUNCTION test_offset_audit()",
]


async def install_offset_audit(engine: AsyncEngine) -> None:
    """Record every committed move of a stored offset."""
    async with engine.begin() as conn:
        for statement in OFFSET_AUDIT_SQL:
            await conn.execute(text(statement))


async def remove_offset_audit(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER IF EXISTS test_offset_audit ON consumer_offsets"))


async def drop_offset_audit(engine: AsyncEngine) -> None:
    """Leave the database as migrations made it (a failed test never reads the audit)."""
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER IF EXISTS test_offset_audit ON consumer_offsets"))
        await conn.execute(text("DROP TABLE IF EXISTS test_offset_audit"))
        await conn.execute(text("DROP FUNCTION IF EXISTS test_offset_audit()"))


async def assert_offsets_only_moved_forward(engine: AsyncEngine, group: str) -> int:
    """No committed batch ever moved a stored offset backwards or kept it (what a stale batch
    applied by a zombie would do); returns how many moves were committed."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT topic, partition, old, new FROM test_offset_audit "
                    "WHERE consumer_group = :g ORDER BY id"
                ),
                {"g": group},
            )
        ).all()
    async with engine.begin() as conn:
        # The audit is the test's, not the schema's: leave the database as migrations made it.
        await conn.execute(text("DROP TABLE IF EXISTS test_offset_audit"))
        await conn.execute(text("DROP FUNCTION IF EXISTS test_offset_audit()"))
    backwards = [r for r in rows if r.old is not None and r.new <= r.old]
    assert not backwards, f"stored offsets moved backwards: {backwards[:5]}"
    return len(rows)
