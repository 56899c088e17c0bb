"""Table definitions (SQLAlchemy Core). Migrations in `migrations/` create exactly these.

Autovacuum storage parameters (set by migration 0002, not compared by the test): events,
ledger_entries and alerts are vacuumed after 1 % inserted rows; accounts after 2 % dead.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

TS = DateTime(timezone=True)

# The event store: append-only, arrival order in `seq`.
events = Table(
    "events",
    metadata,
    Column("seq", BigInteger, Identity(always=True), primary_key=True),
    Column("source", String(256), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("type", String(128), nullable=False),
    Column("time", TS, nullable=False),
    Column("effective_at", TS, nullable=False),
    Column("received_at", TS, nullable=False),
    Column("magnitude", Double, nullable=False),
    Column("content_hash", LargeBinary, nullable=False),
    Column("envelope", JSONB, nullable=False),
    Column("path", String(16), nullable=False),
    UniqueConstraint("source", "event_id"),
)

# Append-only. Each replay writes a complete new `generation`; `projection_state.generation` names
# the one every read and write uses (older ones stay until an operator prunes them).
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger, Identity(always=True), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("event_seq", BigInteger, ForeignKey("events.seq"), nullable=True),
    Column("source", String(256), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("type", String(128), nullable=False),
    Column("pillar", String(64), nullable=True),
    Column("amount", Double, nullable=False),
    Column("effective_at", TS, nullable=False),
    Column("recorded_at", TS, nullable=False, server_default=text("now()")),
    Column("policy_version", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    CheckConstraint("outcome IN ('applied', 'unweighted')", name="outcome"),
    # One entry per stored event and generation; the opening entry (no event) once per customer.
    UniqueConstraint("generation", "event_seq"),
    Index(
        "ix_ledger_entries_customer_time", "customer_id", "generation", "effective_at", "entry_id"
    ),
)
Index(
    "uq_ledger_entries_opening",
    ledger_entries.c.customer_id,
    ledger_entries.c.generation,
    unique=True,
    postgresql_where=ledger_entries.c.event_seq.is_(None),
)

accounts = Table(
    "accounts",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("segment", String(64), nullable=True),
    Column("ref_balance", Double, nullable=False),
    Column("ref_time", TS, nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_since", TS, nullable=False),
    Column("opened_at", TS, nullable=False),
    Column("last_event_at", TS, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("next_transition_at", TS, nullable=True),
    Column("rank_sign", SmallInteger, nullable=False),
    Column("rank_value", Double, nullable=False),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    CheckConstraint("status IN ('ok', 'at_risk')", name="status"),
)
# The at-risk list, lowest first, with and without a segment: on at-risk accounts only, so an
# account that is `ok` never touches them.
Index(
    "ix_accounts_at_risk_rank",
    accounts.c.rank_sign,
    accounts.c.rank_value,
    accounts.c.customer_id,
    postgresql_where=accounts.c.status == "at_risk",
)
Index(
    "ix_accounts_at_risk_segment_rank",
    accounts.c.segment,
    accounts.c.rank_sign,
    accounts.c.rank_value,
    accounts.c.customer_id,
    postgresql_where=accounts.c.status == "at_risk",
)
Index(
    "ix_accounts_next_transition_at",
    accounts.c.next_transition_at,
    postgresql_where=accounts.c.next_transition_at.is_not(None),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", BigInteger, Identity(always=True), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("balance", Double, nullable=False),
    Column("threshold", Double, nullable=False),
    Column("at", TS, nullable=False),
    Column("cause_source", String(256), nullable=True),
    Column("cause_id", String(256), nullable=True),
    # When the alert was written: how long a sink has had it (webhooks give up after a while).
    Column("recorded_at", TS, nullable=False, server_default=text("now()")),
    CheckConstraint("kind IN ('at_risk', 'recovered')", name="kind"),
    Index("ix_alerts_customer_id", "customer_id", "alert_id"),
)

# Webhooks (README): where alerts are POSTed, signed with `secret` (Standard Webhooks).
webhooks = Table(
    "webhooks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("kinds", ARRAY(String(16)), nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
)

# Where each alert sink (the alerts topic, each webhook) is in the alerts table: alert ids become
# visible in id order, so a sink's progress is one id, and a slow sink holds back no other.
alert_sinks = Table(
    "alert_sinks",
    metadata,
    Column("sink", String(128), primary_key=True),
    Column(
        "webhook",
        String(64),
        ForeignKey("webhooks.name", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("last_alert_id", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TS, nullable=True),
    Column("failing_since", TS, nullable=True),
    Column("last_success_at", TS, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", TS, nullable=True),
    Column("given_up", BigInteger, nullable=False, server_default=text("0")),
    Column("last_given_up_at", TS, nullable=True),
    # A webhook's relay delivers one alert outside any transaction, under a lease.
    Column("lease_owner", String(64), nullable=True),
    Column("leased_until", TS, nullable=True),
    UniqueConstraint("webhook"),
)

policies = Table(
    "policies",
    metadata,
    Column("version", String(128), primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("half_life_days", Double, nullable=True),
    Column("first_loaded_at", TS, nullable=False, server_default=text("now()")),
    Column("activated_at", TS, nullable=False, server_default=text("now()")),
)

# Singleton: the active policy (the projections were computed under it) and ledger generation.
projection_state = Table(
    "projection_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("policy_version", String(128), ForeignKey("policies.version"), nullable=False),
    Column("half_life_days", Double, nullable=True),
    Column("generation", Integer, nullable=False, server_default=text("1")),
    CheckConstraint("id = 1", name="singleton"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer_group", String(256), primary_key=True),
    Column("topic", String(256), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    # The log the offset counts in: "topic:<topic id>", or "cluster:<cluster id>" for a broker
    # without topic ids; null when the broker names neither (or the row predates the column).
    Column("log_id", String(128), nullable=True),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
)
