"""Policy history and the projection state: which policy is active and which ledger generation
every read and write uses; the guard that keeps projections and the active half-life in step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.policy import Policy, parse_policy

FIRST_GENERATION = 1


class PolicyMismatch(Exception):
    """The stored projections were computed under another half-life: a replay must rebuild them."""


@dataclass(frozen=True, slots=True)
class ProjectionState:
    policy_version: str | None  # None: no policy recorded yet (a fresh database)
    half_life_days: float | None
    generation: int
    # When the active policy was last activated: a later state has a later time.
    activated_at: datetime | None


# The projection state's row (none in a fresh database); `reads` joins it to the hot reads.
STATE = (
    "SELECT s.policy_version, s.half_life_days, s.generation, p.activated_at "
    "FROM projection_state s JOIN policies p ON p.version = s.policy_version "
    "WHERE s.id = 1"
)


async def state(conn: AsyncConnection) -> ProjectionState:
    row = (await conn.execute(text(STATE))).first()
    if row is None:
        return ProjectionState(None, None, FIRST_GENERATION, None)
    return ProjectionState(row.policy_version, row.half_life_days, row.generation, row.activated_at)


async def load(conn: AsyncConnection, version: str) -> Policy:
    """A recorded policy, as it was recorded."""
    document = (
        await conn.execute(text("SELECT document FROM policies WHERE version = :v"), {"v": version})
    ).scalar_one()
    return parse_policy(document, origin=f"policy {version} (stored)")


async def record(conn: AsyncConnection, policy: Policy) -> None:
    await conn.execute(
        text(
            """
            INSERT INTO policies (version, document, half_life_days, activated_at)
            VALUES (:v, CAST(:doc AS jsonb), :h, clock_timestamp())
            ON CONFLICT (version) DO UPDATE
            SET document = EXCLUDED.document, half_life_days = EXCLUDED.half_life_days,
                activated_at = EXCLUDED.activated_at
            """
        ),
        {"v": policy.version, "doc": policy.model_dump_json(), "h": policy.half_life_days},
    )


async def set_projection_policy(
    conn: AsyncConnection, policy: Policy, *, generation: int | None = None
) -> None:
    """Make `policy` the active one (and `generation` the active ledger, when given)."""
    await record(conn, policy)
    await conn.execute(
        text(
            """
            INSERT INTO projection_state (id, policy_version, half_life_days, generation)
            VALUES (1, :v, :h, coalesce(CAST(:g AS int), :first))
            ON CONFLICT (id) DO UPDATE
            SET policy_version = :v, half_life_days = :h,
                generation = coalesce(CAST(:g AS int), projection_state.generation)
            """
        ),
        {"v": policy.version, "h": policy.half_life_days, "g": generation, "first": 1},
    )


async def next_generation(conn: AsyncConnection) -> int:
    """A generation no ledger entry has yet (an aborted replay leaves none behind)."""
    found = (
        await conn.execute(
            text(
                "SELECT greatest(coalesce(max(generation), 0), "
                "coalesce((SELECT generation FROM projection_state WHERE id = 1), 0)) "
                "FROM ledger_entries"
            )
        )
    ).scalar_one()
    return int(found) + 1


async def activate(conn: AsyncConnection, policy: Policy) -> Policy:
    """Make `policy` (the configured one, at start-up) the active one, unless the projections
    need a replay first or the database has moved on; returns the policy now active.

    New weights, thresholds and segments apply from now on, so they need nothing; a different
    half-life changes the meaning of every stored (ref_balance, ref_time) pair. A version the
    database has recorded and since replaced (by `relbank replay --policy`) is stale
    configuration: the database's active policy stays and is returned.
    """
    current = await state(conn)
    if current.policy_version is not None and current.policy_version != policy.version:
        known = (
            await conn.execute(
                text("SELECT EXISTS (SELECT 1 FROM policies WHERE version = :v)"),
                {"v": policy.version},
            )
        ).scalar()
        if known:
            return await load(conn, current.policy_version)
    has_accounts = (await conn.execute(text("SELECT EXISTS (SELECT 1 FROM accounts)"))).scalar()
    if (
        current.policy_version is not None
        and has_accounts
        and current.half_life_days != policy.half_life_days
    ):
        raise PolicyMismatch(
            f"policy {policy.version} has half_life_days={policy.half_life_days}, but the "
            f"balances were computed under {current.policy_version} "
            f"(half_life_days={current.half_life_days}); run `relbank replay` with this policy "
            "first to rebuild them"
        )
    await set_projection_policy(conn, policy)
    return policy


async def projection_state(conn: AsyncConnection) -> tuple[str, float | None] | None:
    """(policy version, half-life) the stored projections were computed under; None before any."""
    row = (
        await conn.execute(
            text("SELECT policy_version, half_life_days FROM projection_state WHERE id = 1")
        )
    ).first()
    return (row.policy_version, row.half_life_days) if row else None
