"""Ledger entries are written with COPY: still inside the caller's transaction, and refused data
still raised as SQLAlchemy does, so the Kafka path can set a refused event aside."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.ledger import Booking, Entry
from service.storage import ledger
from service.storage.db import refused_data


def opening(customer_id: str, type_: str = "relbank.account.opened") -> Entry:
    return Entry(
        customer_id=customer_id,
        event_seq=None,
        source="relbank",
        id=f"opened:{customer_id}",
        type=type_,
        pillar=None,
        amount=1.0,
        effective_at=datetime.now(UTC),
        policy_version="v1",
        outcome="applied",
        reason=None,
    )


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one())


async def test_copy_as_first_statement_is_rolled_back_with_its_transaction(
    clean: AsyncEngine,
) -> None:
    async with clean.connect() as conn:
        transaction = await conn.begin()
        await ledger.insert(conn, Booking(entries=[opening("c1")]), generation=1)
        await transaction.rollback()
    assert await count(clean) == 0
    async with clean.begin() as conn:
        await ledger.insert(conn, Booking(entries=[opening("c1"), opening("c2")]), generation=1)
    assert await count(clean) == 2


async def test_refused_entry_raises_a_dbapi_error_that_says_refused(clean: AsyncEngine) -> None:
    async with clean.begin() as conn:
        with pytest.raises(DBAPIError) as caught:
            await ledger.insert(
                conn, Booking(entries=[opening("c1", type_="x" * 200)]), generation=1
            )
        await conn.rollback()
    assert refused_data(caught.value)
    assert await count(clean) == 0
