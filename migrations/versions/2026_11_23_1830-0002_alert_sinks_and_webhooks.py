"""alert sinks and webhooks: per-sink progress over the alerts table replaces the outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:30:00

Each sink (the alerts topic, each webhook) keeps the id of the last alert it has delivered; the
alerts table, whose ids become visible in id order, is the log they read. The outbox copied every
alert; its progress carries over as the alerts topic's sink row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "alerts",
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_table(
        "webhooks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("kinds", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "alert_sinks",
        sa.Column("sink", sa.String(length=128), nullable=False),
        sa.Column("webhook", sa.String(length=64), nullable=True),
        sa.Column("last_alert_id", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_up", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_given_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook"],
            ["webhooks.name"],
            name=op.f("fk_alert_sinks_webhook_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sink", name=op.f("pk_alert_sinks")),
        sa.UniqueConstraint("webhook", name=op.f("uq_alert_sinks_webhook")),
    )
    # The alerts topic goes on where the outbox relay stopped: before the oldest unpublished row,
    # or after the newest row when all were published. No outbox row at all: nothing to carry,
    # and the relay starts from the first alert, as the outbox would have.
    op.execute(
        """
        INSERT INTO alert_sinks (sink, last_alert_id)
        SELECT 'kafka', COALESCE(
            (SELECT min((payload->>'id')::bigint) - 1 FROM outbox WHERE published_at IS NULL),
            (SELECT max((payload->>'id')::bigint) FROM outbox))
        WHERE EXISTS (SELECT 1 FROM outbox)
        """
    )
    op.drop_index(
        "ix_outbox_pending", table_name="outbox", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox")


def downgrade() -> None:
    # The outbox comes back empty: it held the alerts topic's name, which the database does not
    # know. Alerts the topic had not received yet stay in the alert feed.
    op.create_table(
        "outbox",
        sa.Column("outbox_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["outbox_id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("alert_sinks")
    op.drop_table("webhooks")
    op.drop_column("alerts", "recorded_at")
