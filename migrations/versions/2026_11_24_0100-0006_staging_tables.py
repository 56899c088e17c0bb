"""the runtime role may create temporary tables: a batch is staged in one before it is written

A batch of events and the accounts it changes are copied (COPY) into temporary tables of the
session and written from there with one statement each. PostgreSQL grants TEMPORARY to PUBLIC
by default; a hardened database that revoked it must still grant it to `relbank_runtime`. Run
by a role that may not grant it, this only warns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "relbank_runtime"


def _on_this_database(action: str) -> None:
    op.execute(f"DO $$ BEGIN EXECUTE format('{action}', current_database()); END $$")


def upgrade() -> None:
    _on_this_database(f"GRANT TEMPORARY ON DATABASE %I TO {RUNTIME_ROLE}")


def downgrade() -> None:
    _on_this_database(f"REVOKE TEMPORARY ON DATABASE %I FROM {RUNTIME_ROLE}")
