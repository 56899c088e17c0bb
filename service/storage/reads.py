"""The hot reads (a customer, the at-risk list), each ONE statement that also reads the projection
state (`policies.state`): the state decides the policy a read is shown under, and reading it in
the same statement costs no round trip and sees the same snapshot as the rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.ledger import Account
from service.storage import accounts
from service.storage.policies import FIRST_GENERATION, STATE, ProjectionState

# One row whether or not a policy has been recorded yet (a fresh database has no state row).
_WITH_STATE = (
    "SELECT st.policy_version, st.half_life_days, st.generation, st.activated_at, {columns} "
    f"FROM (SELECT 1) AS one LEFT JOIN ({STATE}) AS st ON true "
)
_ACCOUNT_COLUMNS = ", ".join(f"a.{c.strip()}" for c in accounts.COLUMNS.split(","))
_STATE_WIDTH = 4


def _state(row: Any) -> ProjectionState:
    version, half_life, generation, activated_at = row[:_STATE_WIDTH]
    if version is None:
        return ProjectionState(None, None, FIRST_GENERATION, None)
    return ProjectionState(version, half_life, generation, activated_at)


def _account(row: Any) -> Account | None:
    values = row[_STATE_WIDTH:]
    return accounts.from_row(values) if values[0] is not None else None


_ACCOUNT = (
    _WITH_STATE.format(columns=_ACCOUNT_COLUMNS) + "LEFT JOIN accounts a ON a.customer_id = $1"
)


async def account(driver: Any, customer_id: str) -> tuple[ProjectionState, Account | None]:
    """The projection state, and the customer's account (None: never seen).

    The hottest read: on the driver's connection (`Database.driver`) and its prepared statement,
    as SQLAlchemy's statement and result machinery cost more than the query itself."""
    row = await driver.fetchrow(_ACCOUNT, customer_id)
    return _state(row), _account(row)


async def account_in(
    conn: AsyncConnection, customer_id: str
) -> tuple[ProjectionState, Account | None]:
    """`account`, on the driver's connection under a SQLAlchemy one (reads that go on with it)."""
    return await account((await conn.get_raw_connection()).driver_connection, customer_id)


async def at_risk_page(
    conn: AsyncConnection, *, segment: str | None, limit: int, after: accounts.RankKey | None
) -> tuple[ProjectionState, tuple[list[Account], accounts.RankKey | None]]:
    """The projection state, and a page of `accounts.at_risk_page` with its cursor."""
    where, params = accounts.at_risk_filter(segment, after)
    rows = (
        await conn.execute(
            text(
                _WITH_STATE.format(columns=_ACCOUNT_COLUMNS)
                + f"LEFT JOIN LATERAL (SELECT {accounts.COLUMNS} FROM accounts WHERE {where} "
                "ORDER BY rank_sign, rank_value, customer_id LIMIT :limit) AS a ON true "
                "ORDER BY a.rank_sign, a.rank_value, a.customer_id"
            ),
            params | {"limit": limit + 1},
        )
    ).all()
    found = [a for a in map(_account, rows) if a is not None]
    return _state(rows[0]), accounts.paged(found, limit)
