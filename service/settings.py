"""The one settings class: every variable is `RELBANK_*`, and a bad one stops start-up by name.

`load_settings` is the way in: it also refuses `RELBANK_*` names the class does not know (a typo
must not fall back to a default silently) and reports every bad variable at once, as a
`SettingsError` that only the command line turns into an exit.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "RELBANK_"

# `RELBANK_` names read by something other than this class; they are documented, not typos.
READ_ELSEWHERE = {
    "RELBANK_API_KEY": "The API key `relbank send --to http` sends when `--api-key` is not given.",
    "RELBANK_TEST_*": "Read by the test suite only (`RELBANK_TEST_DATABASE_URL`, "
    "`RELBANK_TEST_EMBEDDED`); see `tests/conftest.py`.",
}

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HUMAN = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ISO = TypeAdapter(timedelta)


def parse_duration(value: object) -> timedelta:
    """`300s`, `5m`, `2h`, `1d`, `1h30m`, ISO 8601 (`PT5M`) or plain seconds, never negative."""
    if isinstance(value, timedelta):
        found = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found = timedelta(seconds=value)
    elif isinstance(value, str) and _NUMBER.fullmatch(text := value.strip()):
        found = timedelta(seconds=float(text))
    elif isinstance(value, str) and _HUMAN.sub("", text) == "" and text:
        found = timedelta(
            seconds=sum(float(n) * _UNITS[unit.lower()] for n, unit in _HUMAN.findall(text))
        )
    else:
        try:
            found = _ISO.validate_python(value.strip().upper() if isinstance(value, str) else value)
        except ValidationError:
            raise PydanticCustomError(
                "duration",
                "expected a duration such as 300s, 5m, 2h, 1d, PT5M or a number of seconds",
            ) from None
    if found < timedelta(0):
        raise PydanticCustomError("duration", "a duration cannot be negative")
    return found


def format_duration(seconds: float) -> str:
    """The shortest human form `parse_duration` reads back: 300 -> `5m`."""
    for unit in ("w", "d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


AS_TIMEDELTA = BeforeValidator(parse_duration)
AS_SECONDS = BeforeValidator(lambda value: parse_duration(value).total_seconds())
Duration = Annotated[timedelta, AS_TIMEDELTA]
# Seconds as a float, for settings whose (kept) names end in `_SECONDS`; written like any duration.
Seconds = Annotated[float, AS_SECONDS]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/relbank",
        description="PostgreSQL URL (`postgresql://` or `postgresql+asyncpg://`).",
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=200, description="Connections each process keeps to PostgreSQL."
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers, `host:port[,host:port...]`. Unset: nothing is "
        "read from or written to Kafka, and `relbank serve --role consumer` refuses to start.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to reach the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; needed with a `SASL_*` protocol."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name; needed with a `SASL_*` protocol."
    )
    kafka_sasl_password: str | None = Field(
        default=None, description="SASL password; needed with a `SASL_*` protocol."
    )
    kafka_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates (`SSL`, "
        "`SASL_SSL`); unset: the system trust store.",
    )
    input_topic: str = Field(
        default="relbank.interactions", description="Topic of input events (CloudEvents)."
    )
    dlq_topic: str = Field(
        default="relbank.interactions.dlq",
        description="Dead-letter topic for records that cannot be accepted.",
    )
    alerts_topic: str = Field(
        default="relbank.alerts", description="Topic the alert transitions are published to."
    )
    consumer_group: str = Field(default="relbank", description="Kafka consumer group.")
    consumer_max_records: int = Field(
        default=1000, ge=1, le=100_000, description="Most records the consumer applies per batch."
    )
    consumer_members: int = Field(
        default=3,
        ge=1,
        le=32,
        description="Members of the consumer group this process runs. Each takes a share of "
        "the partitions (the partition count bounds how many do work); with more than one, "
        "PostgreSQL applies one member's batch while Python prepares another's.",
    )
    consumer_stuck_seconds: Seconds = Field(
        default=120.0,
        gt=0,
        description="A consumer that makes no progress for this long reports itself not ready.",
    )
    consumer_session_timeout_seconds: Seconds = Field(
        default=10.0,
        ge=1,
        le=300,
        description="Kafka group session timeout: how soon a dead consumer's partitions move "
        "to the others.",
    )
    policy: Path | None = Field(
        default=None, description="Weighting policy YAML file; unset: the built-in default."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="YAML list of `{name, sha256, scopes}`; required unless `RELBANK_AUTH` is "
        "`disabled`.",
    )
    auth: Literal["enabled", "disabled"] = Field(
        default="enabled", description="API-key authentication of the HTTP API."
    )
    metrics_auth: Literal["enabled", "disabled"] = Field(
        default="enabled",
        description="With auth enabled, `/metrics` needs a key with the `metrics` scope; "
        "`disabled` lets anyone scrape it.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP server.")
    max_future_skew: Duration = Field(
        default=timedelta(minutes=5),
        description="How far in the future an event's `time` may be before it is rejected.",
    )
    group_commit_window: Duration = Field(
        default=timedelta(milliseconds=2),
        description="How long an HTTP ingest request waits for others to share its transaction "
        "(group commit; answered only once it committed). `0` commits each request alone.",
    )
    group_commit_max_events: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Most events one shared HTTP ingest transaction holds; a request of this "
        "many events or more has a transaction of its own.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted (`413` above)."
    )
    header_timeout_seconds: Seconds = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A client that has not sent a request's whole head within this is "
        "disconnected.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open HTTP connections beyond this are answered `503` (file descriptors "
        "are the limit, not memory).",
    )
    at_risk_gauge_limit: int = Field(
        default=500,
        ge=0,
        le=100_000,
        description="How many of the lowest at-risk accounts `relbank_at_risk_balance` exports.",
    )
    sweep_interval_seconds: Seconds = Field(
        default=30.0,
        gt=0,
        description="How often the sweeper applies the crossings that decay alone brings due.",
    )
    webhook_timeout_seconds: Seconds = Field(
        default=10.0,
        gt=0,
        description="A webhook receiver that has not answered within this has failed the delivery.",
    )
    webhook_retry_base_seconds: Seconds = Field(
        default=5.0,
        gt=0,
        description="The first retry of a failed webhook delivery comes after "
        "about this long; each further one waits twice as long, up to the cap.",
    )
    webhook_retry_cap_seconds: Seconds = Field(
        default=3600.0, gt=0, description="The longest wait between two webhook delivery attempts."
    )
    webhook_give_up_after_seconds: Seconds = Field(
        default=86_400.0,
        gt=0,
        description="A webhook's relay gives up on an alert once the webhook has been failing "
        "this long and the alert is at least this old (it is counted and the next one is tried).",
    )
    metrics_refresh_seconds: Seconds = Field(
        default=5.0,
        gt=0,
        description="How often each process probes the database for relbank_database_up, and the "
        "worker refreshes the database-derived gauges.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Least severe log level written (any case)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`: one line per record for people; `json`: one JSON object per line.",
    )

    @field_validator("log_level", "kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "auth", "metrics_auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("kafka_bootstrap", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        protocol = self.kafka_security_protocol
        sasl = {
            "RELBANK_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "RELBANK_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "RELBANK_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        if protocol.startswith("SASL_"):
            if missing := [name for name, value in sasl.items() if value is None]:
                problems.append(
                    f"{', '.join(missing)}: not set, and RELBANK_KAFKA_SECURITY_PROTOCOL is "
                    f"{protocol}, which needs a mechanism, a user name and a password"
                )
        elif given := [name for name, value in sasl.items() if value is not None]:
            problems.append(
                f"{', '.join(given)}: set, but RELBANK_KAFKA_SECURITY_PROTOCOL is {protocol}, "
                "which does not use SASL: set it to SASL_SSL or SASL_PLAINTEXT"
            )
        if self.kafka_ca_file is not None and protocol not in ("SSL", "SASL_SSL"):
            problems.append(
                f"RELBANK_KAFKA_CA_FILE: set, but RELBANK_KAFKA_SECURITY_PROTOCOL is {protocol}, "
                "which does not use TLS: set it to SSL or SASL_SSL"
            )
        if problems:
            raise PydanticCustomError("inconsistent", "{detail}", {"detail": "\n".join(problems)})
        return self

    def for_role(self, role: str) -> Self:
        """These settings, or a `SettingsError` when the `relbank serve` role cannot work with
        them (a consumer with no broker would be ready and consume nothing)."""
        if role == "consumer" and self.kafka_bootstrap is None:
            raise SettingsError(
                [
                    "RELBANK_KAFKA_BOOTSTRAP: not set, so `relbank serve --role consumer` has "
                    "no broker to consume from: set it to the Kafka bootstrap servers"
                ]
            )
        return self

    @property
    def async_database_url(self) -> str:
        scheme, rest = self.database_url.split("://", 1)
        return (
            f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else self.database_url
        )

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable name -> field name."""
        return {PREFIX + name.upper(): name for name in cls.model_fields}

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str]) -> list[str]:
        """A problem line for each `RELBANK_*` name in `environ` that nothing reads."""
        known = cls.variables()
        elsewhere = [name for name in READ_ELSEWHERE if not name.endswith("*")]
        prefixes = tuple(name[:-1] for name in READ_ELSEWHERE if name.endswith("*"))
        problems = []
        for name in sorted(environ):
            upper = name.upper()
            if not upper.startswith(PREFIX) or upper in known or upper in elsewhere:
                continue
            if upper.startswith(prefixes):
                continue
            line = f"{name}: not a relbank setting"
            close = difflib.get_close_matches(
                upper.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in known], n=1
            )
            if close:
                line += f"; did you mean {PREFIX}{close[0]}?"
            problems.append(line)
        return problems


class SettingsError(Exception):
    """The configuration cannot work: `problems` are lines that each name their variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        body = "\n".join("  " + line.replace("\n", "\n  ") for line in problems)
        super().__init__(f"relbank: bad configuration:\n{body}")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `overrides` (by field name); a `SettingsError` naming
    every bad variable, unknown `RELBANK_*` names included."""
    problems = Settings.unknown_variables(os.environ)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            where = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{PREFIX}{where}: {error['msg']}" if where else error["msg"])
    if problems:
        raise SettingsError(problems)
    return settings


if __name__ == "__main__":
    # `python -m service.settings [README.md]`: every generated README table, this one included.
    import sys

    from service.docs import main

    main(sys.argv[1:])
