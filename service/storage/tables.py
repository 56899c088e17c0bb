"""Table definitions (SQLAlchemy Core). Migrations in `migrations/` create exactly these."""

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
from sqlalchemy.dialects.postgresql import JSONB

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

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger, Identity(always=True), primary_key=True),
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
    # One entry per stored event; the opening entry (no event) once per customer.
    UniqueConstraint("event_seq"),
    Index("ix_ledger_entries_customer_time", "customer_id", "effective_at", "entry_id"),
)
Index(
    "uq_ledger_entries_opening",
    ledger_entries.c.customer_id,
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
    Index("ix_accounts_status_rank", "status", "rank_sign", "rank_value", "customer_id"),
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
    CheckConstraint("kind IN ('at_risk', 'recovered')", name="kind"),
    Index("ix_alerts_customer_id", "customer_id", "alert_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("outbox_id", BigInteger, Identity(always=True), primary_key=True),
    Column("topic", String(256), nullable=False),
    Column("key", String(256), nullable=True),
    Column("payload", JSONB, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("published_at", TS, nullable=True),
)
Index(
    "ix_outbox_pending",
    outbox.c.outbox_id,
    postgresql_where=outbox.c.published_at.is_(None),
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

# Singleton: which policy the projections were computed under.
projection_state = Table(
    "projection_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("policy_version", String(128), ForeignKey("policies.version"), nullable=False),
    Column("half_life_days", Double, nullable=True),
    CheckConstraint("id = 1", name="singleton"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer_group", String(256), primary_key=True),
    Column("topic", String(256), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
)
