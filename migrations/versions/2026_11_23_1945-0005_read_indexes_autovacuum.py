"""at-risk reads by partial indexes; autovacuum settings for the append-only and hot tables

The at-risk list read every at-risk account when a segment had few of them (1.2 s at 1M
accounts); a partial index per order, on at-risk accounts only, answers it from the first rows,
and is not touched when an account that is `ok` changes (most of them). Append-only tables are
vacuumed after 1 % new rows (visibility map for index-only scans, freezing in small steps), the
accounts (updated in place by every event) after 2 % dead rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("events", "ledger_entries", "alerts")
INSERT_VACUUM = (
    "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_insert_threshold = 10000"
)
ACCOUNTS_VACUUM = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"


def upgrade() -> None:
    at_risk = sa.text("status = 'at_risk'")
    op.create_index(
        "ix_accounts_at_risk_rank",
        "accounts",
        ["rank_sign", "rank_value", "customer_id"],
        postgresql_where=at_risk,
    )
    op.create_index(
        "ix_accounts_at_risk_segment_rank",
        "accounts",
        ["segment", "rank_sign", "rank_value", "customer_id"],
        postgresql_where=at_risk,
    )
    op.drop_index("ix_accounts_status_rank", table_name="accounts")
    for table in APPEND_ONLY:
        op.execute(f"ALTER TABLE {table} SET ({INSERT_VACUUM})")
    op.execute(f"ALTER TABLE accounts SET ({ACCOUNTS_VACUUM})")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE accounts RESET (autovacuum_vacuum_scale_factor, "
        "autovacuum_analyze_scale_factor)"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_vacuum_insert_scale_factor, "
            "autovacuum_vacuum_insert_threshold)"
        )
    op.create_index(
        "ix_accounts_status_rank",
        "accounts",
        ["status", "rank_sign", "rank_value", "customer_id"],
    )
    op.drop_index("ix_accounts_at_risk_segment_rank", table_name="accounts")
    op.drop_index("ix_accounts_at_risk_rank", table_name="accounts")
