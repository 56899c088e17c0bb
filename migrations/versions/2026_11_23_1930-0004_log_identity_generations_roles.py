"""offsets name their log, ledger generations, the runtime role

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:30:00

- `consumer_offsets.log_id`: the log a stored offset counts in (README); existing rows get
  null and adopt the log the consumer finds next.
- `ledger_entries.generation`, `projection_state.generation`: a replay writes the rebuilt ledger
  as a new generation (INSERT only) and flips the active one; existing entries are generation 1.
- The role `relbank_runtime` (NOLOGIN), created if missing, with what the service needs and no
  more: SELECT and INSERT only on the append-only `events`, `ledger_entries` and `alerts`;
  SELECT, INSERT and UPDATE on the mutable tables; USAGE on the sequences. No DELETE, no
  TRUNCATE anywhere.

Roles, as an operator sets them up (roles are per server, grants per database):

    -- the owner runs `relbank migrate` (and owns the tables it creates):
    CREATE ROLE relbank_owner LOGIN PASSWORD '...';
    CREATE DATABASE relbank OWNER relbank_owner;
    -- needed once if relbank_owner may not create roles (a superuser runs it):
    CREATE ROLE relbank_runtime NOLOGIN;
    -- the service (`relbank serve`, `relbank replay`) runs as a member of relbank_runtime:
    CREATE ROLE relbank_app LOGIN PASSWORD '...' IN ROLE relbank_runtime;

Later migrations grant relbank_runtime what they create.

Old ledger generations are kept (the ledger is append-only to the service). The owner may
prune those no reader uses any more, e.g. after checking that no replay is running:

    DELETE FROM ledger_entries
    WHERE generation < (SELECT generation FROM projection_state WHERE id = 1);
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "relbank_runtime"
APPEND_ONLY = ("events", "ledger_entries", "alerts")

_CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN
        BEGIN
            CREATE ROLE {RUNTIME_ROLE} NOLOGIN;
        EXCEPTION
            -- Created meanwhile by a migration of another database on this server.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'relbank migrate: the role {RUNTIME_ROLE} does not exist and % '
                    'may not create roles', current_user
                    USING HINT = 'as a superuser: CREATE ROLE {RUNTIME_ROLE} NOLOGIN; '
                                 'then run relbank migrate again';
        END;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.add_column("consumer_offsets", sa.Column("log_id", sa.String(length=128), nullable=True))

    op.add_column(
        "projection_state",
        sa.Column("generation", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    # Added with a default for the existing rows, then without: every writer names it.
    op.add_column(
        "ledger_entries",
        sa.Column("generation", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.alter_column("ledger_entries", "generation", server_default=None)
    op.drop_constraint("uq_ledger_entries_event_seq", "ledger_entries", type_="unique")
    op.create_unique_constraint(
        op.f("uq_ledger_entries_generation_event_seq"),
        "ledger_entries",
        ["generation", "event_seq"],
    )
    op.drop_index(
        "uq_ledger_entries_opening",
        table_name="ledger_entries",
        postgresql_where=sa.text("event_seq IS NULL"),
    )
    op.create_index(
        "uq_ledger_entries_opening",
        "ledger_entries",
        ["customer_id", "generation"],
        unique=True,
        postgresql_where=sa.text("event_seq IS NULL"),
    )
    op.drop_index("ix_ledger_entries_customer_time", table_name="ledger_entries")
    op.create_index(
        "ix_ledger_entries_customer_time",
        "ledger_entries",
        ["customer_id", "generation", "effective_at", "entry_id"],
        unique=False,
    )

    op.execute(_CREATE_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {RUNTIME_ROLE}")
    # Every table relbank has: read, add, change (accounts, policies, projection_state,
    # consumer_offsets, outbox, ...); then the history is made append-only. No DELETE, no
    # TRUNCATE anywhere.
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {RUNTIME_ROLE}")
    op.execute(f"REVOKE UPDATE ON {', '.join(APPEND_ONLY)} FROM {RUNTIME_ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE ON alembic_version FROM {RUNTIME_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {RUNTIME_ROLE}")
    # A webhook can be removed (its delivery state goes with it by cascade).
    op.execute(f"GRANT DELETE ON webhooks TO {RUNTIME_ROLE}")
    # Tables later migrations add get the same rights by default; append-only ones revoke UPDATE.
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE ON TABLES TO {RUNTIME_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {RUNTIME_ROLE}"
    )


def downgrade() -> None:
    # The role stays (it is per server, other databases may use it); its grants here go.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {RUNTIME_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {RUNTIME_ROLE}")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE ON TABLES FROM {RUNTIME_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE ON SEQUENCES FROM {RUNTIME_ROLE}"
    )
    op.drop_index("ix_ledger_entries_customer_time", table_name="ledger_entries")
    op.create_index(
        "ix_ledger_entries_customer_time",
        "ledger_entries",
        ["customer_id", "effective_at", "entry_id"],
        unique=False,
    )
    op.drop_index(
        "uq_ledger_entries_opening",
        table_name="ledger_entries",
        postgresql_where=sa.text("event_seq IS NULL"),
    )
    # Only the active generation survives a downgrade.
    op.execute(
        "DELETE FROM ledger_entries WHERE generation <> "
        "coalesce((SELECT generation FROM projection_state WHERE id = 1), 1)"
    )
    op.create_index(
        "uq_ledger_entries_opening",
        "ledger_entries",
        ["customer_id"],
        unique=True,
        postgresql_where=sa.text("event_seq IS NULL"),
    )
    op.drop_constraint(
        op.f("uq_ledger_entries_generation_event_seq"), "ledger_entries", type_="unique"
    )
    op.create_unique_constraint(
        op.f("uq_ledger_entries_event_seq"), "ledger_entries", ["event_seq"]
    )
    op.drop_column("ledger_entries", "generation")
    op.drop_column("projection_state", "generation")
    op.drop_column("consumer_offsets", "log_id")
