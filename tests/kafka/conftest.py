"""Kafka fixtures: one embedded broker (Tansu) for the session; topics and group per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.embedded import EmbeddedBroker, free_port, start_broker
from service.kafka.client import ensure_topics
from service.settings import Settings
from tests.support.app import make_settings
from tests.support.ledger import checker_engine
from tests.support.waiting import LEFTOVERS


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    while LEFTOVERS:
        LEFTOVERS.pop().kill()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    started = start_broker(log, port=0)
    yield started
    started.stop()


def kafka_settings_for(database_url: str, bootstrap: str, **overrides: object) -> Settings:
    """Settings with topics and a group of their own, so tests never see each other's records."""
    run = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "kafka_bootstrap": bootstrap,
        "input_topic": f"t-{run}.interactions",
        "dlq_topic": f"t-{run}.dlq",
        "alerts_topic": f"t-{run}.alerts",
        "consumer_group": f"g-{run}",
        # The embedded broker rebalances in about the session timeout: keep it short.
        "consumer_session_timeout_seconds": 3,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
async def kafka_settings(clean: AsyncEngine, database_url: str, broker: EmbeddedBroker) -> Settings:
    """Settings over empty tables, with the three topics created (3 partitions each)."""
    settings = kafka_settings_for(database_url, broker.bootstrap)
    await ensure_topics(settings, partitions=3)
    return settings


@pytest.fixture
async def checker(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = checker_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


class RestartableBroker:
    """Tansu on a fixed port, to stop and start again at the same address (empty: it keeps
    everything in memory)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.running: EmbeddedBroker | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.running = start_broker(self.log, port=self.port)
        assert self.running.bootstrap == self.bootstrap, "the port was taken meanwhile"

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    broker = RestartableBroker(tmp_path / "broker.log")
    broker.start()
    yield broker
    broker.stop()
