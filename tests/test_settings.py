"""Configuration fails fast, naming the variable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.settings import SettingsError, load_settings


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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELBANK_PORT", "eighty"),
        ("RELBANK_PORT", "70000"),
        ("RELBANK_DATABASE_URL", "mysql://x"),
        ("RELBANK_AUTH", "maybe"),
        ("RELBANK_POLICY", "/no/such/policy.yaml"),
        ("RELBANK_MAX_FUTURE_SKEW", "soon"),
        ("RELBANK_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ],
)
def test_a_bad_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert variable in str(raised.value)


def test_asyncpg_url_is_derived(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELBANK_DATABASE_URL", "postgresql://u@db:5432/relbank")
    assert load_settings().async_database_url == "postgresql+asyncpg://u@db:5432/relbank"
