"""Kafka security settings reach aiokafka; a half-configured SASL setup stops start-up by name."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from service.kafka.client import kafka_kwargs
from service.retry import backoff
from tests.support.app import make_settings

URL = "postgresql://postgres@127.0.0.1/x"


def test_plaintext_by_default() -> None:
    kwargs = kafka_kwargs(make_settings(URL, kafka_bootstrap="k1:9092,k2:9092"))
    assert kwargs["bootstrap_servers"] == "k1:9092,k2:9092"
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kwargs
    assert "sasl_mechanism" not in kwargs


def test_sasl_ssl_with_a_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=relbank-test-ca",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(ca),
        ],
        check=True,
        capture_output=True,
    )
    kwargs = kafka_kwargs(
        make_settings(
            URL,
            kafka_bootstrap="k:9093",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="relbank",
            kafka_sasl_password="s3cret",
            kafka_ca_file=ca,
        )
    )
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in kwargs["ssl_context"].get_ca_certs()] == [
        ((("commonName", "relbank-test-ca"),),)
    ]
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "relbank"
    assert kwargs["sasl_plain_password"] == "s3cret"


def test_sasl_plain_over_plaintext() -> None:
    kwargs = kafka_kwargs(
        make_settings(
            URL,
            kafka_bootstrap="k:9092",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert "ssl_context" not in kwargs


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff(n, base=0.2, cap=10) for n in range(1, 30)]
    assert all(0 < d <= 10 for d in delays)
    assert max(delays[:2]) <= 0.8
    assert min(delays[-5:]) >= 5
    assert len({round(backoff(8), 6) for _ in range(20)}) > 1
