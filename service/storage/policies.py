"""Policy history, and the guard that keeps projections and the active half-life in step."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.policy import Policy


class PolicyMismatch(Exception):
    """The stored projections were computed under another half-life: a replay must rebuild them."""


async def record(conn: AsyncConnection, policy: Policy) -> None:
    await conn.execute(
        text(
            """
            INSERT INTO policies (version, document, half_life_days)
            VALUES (:v, CAST(:doc AS jsonb), :h)
            ON CONFLICT (version) DO UPDATE
            SET document = EXCLUDED.document, half_life_days = EXCLUDED.half_life_days,
                activated_at = now()
            """
        ),
        {"v": policy.version, "doc": policy.model_dump_json(), "h": policy.half_life_days},
    )


async def set_projection_policy(conn: AsyncConnection, policy: Policy) -> None:
    await record(conn, policy)
    await conn.execute(
        text(
            """
            INSERT INTO projection_state (id, policy_version, half_life_days) VALUES (1, :v, :h)
            ON CONFLICT (id) DO UPDATE SET policy_version = :v, half_life_days = :h
            """
        ),
        {"v": policy.version, "h": policy.half_life_days},
    )


async def activate(conn: AsyncConnection, policy: Policy) -> None:
    """Make `policy` the active one, unless the projections need a replay first.

    New weights, thresholds and segments apply from now on, so they need nothing; a different
    half-life changes the meaning of every stored (ref_balance, ref_time) pair.
    """
    row = (
        await conn.execute(
            text("SELECT policy_version, half_life_days FROM projection_state WHERE id = 1")
        )
    ).first()
    has_accounts = (await conn.execute(text("SELECT EXISTS (SELECT 1 FROM accounts)"))).scalar()
    if row is not None and has_accounts and row.half_life_days != policy.half_life_days:
        raise PolicyMismatch(
            f"policy {policy.version} has half_life_days={policy.half_life_days}, but the "
            f"balances were computed under {row.policy_version} "
            f"(half_life_days={row.half_life_days}); run `relbank replay` with this policy "
            "first to rebuild them"
        )
    await set_projection_policy(conn, policy)
