"""Configuration fails fast, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from service.docs import TABLE_END, TABLE_START, settings_table
from service.settings import Settings, SettingsError, load_settings, parse_duration

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELBANK_PORT", "RELBANK_MAX_FUTURE_SKEW", "RELBANK_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.port == 8000
    assert settings.max_future_skew == timedelta(minutes=5)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.input_topic == "relbank.interactions"
    assert settings.dlq_topic == "relbank.interactions.dlq"
    assert settings.alerts_topic == "relbank.alerts"
    assert settings.consumer_group == "relbank"
    assert settings.at_risk_gauge_limit == 500
    assert settings.log_format == "text"
    assert settings.metrics_auth == "enabled"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELBANK_PORT", "eighty"),
        ("RELBANK_PORT", "70000"),
        ("RELBANK_DATABASE_URL", "mysql://x"),
        ("RELBANK_AUTH", "maybe"),
        ("RELBANK_METRICS_AUTH", "sometimes"),
        ("RELBANK_POLICY", "/no/such/policy.yaml"),
        ("RELBANK_MAX_FUTURE_SKEW", "soon"),
        ("RELBANK_MAX_FUTURE_SKEW", "-PT5M"),
        ("RELBANK_SWEEP_INTERVAL_SECONDS", "0s"),
        ("RELBANK_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("RELBANK_LOG_LEVEL", "loud"),
        ("RELBANK_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert variable in str(raised.value)


def test_a_settings_error_is_not_an_exit() -> None:
    """Library code raises it; only the command line turns it into an exit status."""
    assert not issubclass(SettingsError, SystemExit)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("RELBANK_DATABSE_URL", "RELBANK_DATABASE_URL"),
        ("RELBANK_KAFKA_BOOTSTRAPS", "RELBANK_KAFKA_BOOTSTRAP"),
        ("RELBANK_LOGLEVEL", "RELBANK_LOG_LEVEL"),
    ],
)
def test_an_unknown_variable_refuses_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, typo: str, meant: str
) -> None:
    monkeypatch.setenv(typo, "postgresql://elsewhere/db")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert f"{typo}: not a relbank setting; did you mean {meant}?" in str(raised.value)


def test_an_unknown_variable_without_a_near_name_gets_no_hint() -> None:
    problems = Settings.unknown_variables({"RELBANK_ZZZQQQ": "1"})
    assert problems == ["RELBANK_ZZZQQQ: not a relbank setting"]


def test_variables_read_elsewhere_are_allowed() -> None:
    environ = {"RELBANK_API_KEY": "k", "RELBANK_TEST_WHATEVER": "1", "RELBANK_PORT": "1"}
    assert Settings.unknown_variables(environ) == []


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELBANK_DATABSE_URL", "postgresql://x/y")
    monkeypatch.setenv("RELBANK_PORT", "eighty")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert len(raised.value.problems) == 2
    assert "RELBANK_DATABSE_URL" in str(raised.value)
    assert "RELBANK_PORT" in str(raised.value)


@pytest.mark.parametrize("value", ["debug", "Debug", "DEBUG", " debug "])
def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RELBANK_LOG_LEVEL", value)
    assert load_settings().log_level == "DEBUG"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300s", 300),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("250ms", 0.25),
        ("5M", 300),
        ("PT5M", 300),
        ("pt5m", 300),
        ("P1DT2H", 93600),
        ("300", 300),
        ("2.5", 2.5),
        (" 5m ", 300),
    ],
)
def test_durations_are_human_iso_or_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "variable",
    [
        "RELBANK_MAX_FUTURE_SKEW",
        "RELBANK_SWEEP_INTERVAL_SECONDS",
        "RELBANK_CONSUMER_STUCK_SECONDS",
        "RELBANK_CONSUMER_SESSION_TIMEOUT_SECONDS",
    ],
)
def test_every_duration_setting_reads_human_durations(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "5m")
    value = getattr(load_settings(), variable.removeprefix("RELBANK_").lower())
    assert value in (timedelta(minutes=5), 300.0)


def test_a_bad_duration_says_what_a_duration_looks_like(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELBANK_MAX_FUTURE_SKEW", "5 minutes")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "RELBANK_MAX_FUTURE_SKEW: expected a duration such as 300s, 5m" in str(raised.value)
    assert "day" not in str(raised.value)


def test_sasl_without_credentials_names_the_missing_variables() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN")
    message = str(raised.value)
    assert "RELBANK_KAFKA_SASL_USERNAME, RELBANK_KAFKA_SASL_PASSWORD: not set" in message
    assert "RELBANK_KAFKA_SASL_MECHANISM," not in message


def test_sasl_settings_without_a_sasl_protocol_are_refused() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u")
    assert "RELBANK_KAFKA_SASL_MECHANISM, RELBANK_KAFKA_SASL_USERNAME: set" in str(raised.value)
    assert "RELBANK_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in str(raised.value)


def test_a_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="RELBANK_KAFKA_CA_FILE: set, but"):
        load_settings(kafka_ca_file=ca, kafka_security_protocol="SASL_PLAINTEXT")
    settings = load_settings(
        kafka_ca_file=ca,
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="scram-sha-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_a_consumer_without_a_broker_is_refused_by_role() -> None:
    settings = load_settings(kafka_bootstrap="  ")
    assert settings.kafka_bootstrap is None
    assert settings.for_role("api") is settings
    with pytest.raises(SettingsError, match="RELBANK_KAFKA_BOOTSTRAP: not set"):
        settings.for_role("consumer")
    configured = load_settings(kafka_bootstrap="k:9092")
    assert configured.for_role("consumer") is configured


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(SettingsError, match="RELBANK_PORTT"):
        load_settings(portt=1)


def test_asyncpg_url_is_derived(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELBANK_DATABASE_URL", "postgresql://u@db:5432/relbank")
    assert load_settings().async_database_url == "postgresql+asyncpg://u@db:5432/relbank"


def test_every_setting_is_described() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == []


def test_the_readme_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert TABLE_START in text, f"README.md has no {TABLE_START} section"
    shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    regenerate = "uv run python -m service.settings README.md"
    assert shown == "\n" + settings_table(), f"README.md's table is stale: run `{regenerate}`"
    for variable in Settings.variables():
        assert f"`{variable}`" in shown


def _relbank(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess, with only `variables` of the RELBANK_* kind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELBANK_")}
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_the_command_line_refuses_a_bad_setting_in_a_few_lines_with_status_2() -> None:
    done = _relbank("migrate", RELBANK_DATABSE_URL="postgresql://x/y", RELBANK_PORT="eighty")
    assert done.returncode == 2, done.stderr
    assert "did you mean RELBANK_DATABASE_URL?" in done.stderr
    assert "RELBANK_PORT" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 3, done.stderr


@pytest.mark.slow
def test_serve_consumer_without_a_broker_refuses_naming_the_variable() -> None:
    done = _relbank("serve", "--role", "consumer", RELBANK_AUTH="disabled")
    assert done.returncode == 2, done.stderr
    assert "RELBANK_KAFKA_BOOTSTRAP: not set" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_lower_case_log_level_does_not_crash_a_command(tmp_path: Path) -> None:
    done = _relbank("schemas", str(tmp_path), RELBANK_LOG_LEVEL="debug")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "policy.schema.json").is_file()
