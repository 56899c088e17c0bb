"""The one settings class: every variable is `RELBANK_*`, and a bad one stops start-up by name."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELBANK_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/relbank",
        description="PostgreSQL URL (postgresql:// or postgresql+asyncpg://).",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    kafka_bootstrap: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ca_file: Path | None = None
    input_topic: str = "relbank.interactions"
    dlq_topic: str = "relbank.interactions.dlq"
    alerts_topic: str = "relbank.alerts"
    consumer_group: str = "relbank"
    consumer_max_records: int = Field(default=1000, ge=1, le=100_000)
    consumer_stuck_seconds: float = Field(default=120.0, gt=0)
    # Kafka group session timeout: how soon a dead consumer's partitions move to the others.
    consumer_session_timeout_seconds: float = Field(default=10.0, ge=1, le=300)
    policy: Path | None = None
    api_keys_file: Path | None = None
    auth: Literal["enabled", "disabled"] = "enabled"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_future_skew: timedelta = timedelta(minutes=5)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    at_risk_gauge_limit: int = Field(default=500, ge=0, le=100_000)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("policy", "api_keys_file", "kafka_ca_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def async_database_url(self) -> str:
        scheme, rest = self.database_url.split("://", 1)
        return (
            f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else self.database_url
        )


class SettingsError(SystemExit):
    """Start-up failure naming the offending variable(s)."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [
            f"  RELBANK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        raise SettingsError("relbank: bad configuration:\n" + "\n".join(lines)) from None
