"""The tools talk to the broker too: the Kafka suite's fixtures."""

from tests.kafka.conftest import broker, checker, kafka_settings, logs

__all__ = ["broker", "checker", "kafka_settings", "logs"]
