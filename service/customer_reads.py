"""The application service's reads of one customer's ledger (a part of `Relbank`): the balance
at a time, its history, the ledger page by page, what moved it. Each reads the projection state
(which policy and ledger generation are active) with the account, in one statement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.balance import balance_from_entries
from service.domain.history import history as balance_history
from service.domain.policy import Policy
from service.storage import ledger, reads
from service.storage.db import Database
from service.storage.policies import ProjectionState


class CustomerReads:
    """Mixed into `Relbank`, which provides the database and adopts the policy in force."""

    db: Database

    async def _adopt(self, conn: AsyncConnection, state: ProjectionState) -> tuple[Policy, int]:
        raise NotImplementedError

    async def _active(self, conn: AsyncConnection) -> tuple[Policy, int]:
        raise NotImplementedError

    async def balance_at(self, customer_id: str, at: datetime) -> float | None:
        """B(at) from the ledger; None for a customer never seen."""
        async with self.db.reading() as conn:
            state, account = await reads.account_in(conn, customer_id)
            policy, generation = await self._adopt(conn, state)
            if account is None:
                return None
            entries = await ledger.entries_until(conn, customer_id, at, generation=generation)
        return balance_from_entries(entries, at, policy.half_life_days)

    async def history(
        self, customer_id: str, *, start: datetime | None, end: datetime, points: int
    ) -> list[tuple[datetime, float]] | None:
        """B(t) at `points` evenly spaced instants from `start` (default: the account's opening)
        to `end`: one query, one pass. None for a customer never seen."""
        async with self.db.reading() as conn:
            policy, generation = await self._active(conn)
            found = await ledger.opened_and_entries_until(
                conn, customer_id, end, generation=generation
            )
        if found is None:
            return None
        opened_at, entries = found
        return balance_history(
            entries,
            opened_at=opened_at,
            start=start,
            end=end,
            points=points,
            half_life_days=policy.half_life_days,
        )

    async def ledger_page(
        self, customer_id: str, *, limit: int, after: ledger.LedgerKey | None
    ) -> tuple[list[ledger.LedgerItem], ledger.LedgerKey | None] | None:
        async with self.db.reading() as conn:
            state, account = await reads.account_in(conn, customer_id)
            _, generation = await self._adopt(conn, state)
            if account is None:
                return None
            return await ledger.page(
                conn, customer_id, limit=limit, after=after, generation=generation
            )

    async def drivers(
        self, customer_id: str, since: datetime | None
    ) -> list[ledger.DriverRow] | None:
        async with self.db.reading() as conn:
            state, account = await reads.account_in(conn, customer_id)
            _, generation = await self._adopt(conn, state)
            if account is None:
                return None
            return await ledger.drivers(conn, customer_id, since, generation=generation)
