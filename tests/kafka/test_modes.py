"""The same corpus through Kafka structured mode, Kafka binary mode and HTTP: the same ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import Policy
from service.kafka.client import ensure_topics, produce_events
from service.settings import Settings
from tests.support.app import close_client, open_client
from tests.support.corpus import make_corpus
from tests.support.db import empty_tables
from tests.support.kafka import running_consumer
from tests.support.ledger import assert_ledger_matches, stored_balances, wait_consumed
from tests.support.oracle import book_all


async def _ledger(engine: AsyncEngine) -> set[tuple[str, str, str, float, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT customer_id, source, event_id, amount, effective_at FROM ledger_entries")
        )
        return {(r.customer_id, r.source, r.event_id, r.amount, r.effective_at) for r in rows}


# The inner loop runs a corpus of 600; the full run adds the 3000 one.
@pytest.mark.parametrize("size", [600, pytest.param(3000, marks=pytest.mark.slow)])
async def test_structured_binary_and_http_give_the_same_ledger(
    size: int,
    kafka_settings: Settings,
    engine: AsyncEngine,
    checker: AsyncEngine,
    database_url: str,
    default_policy: Policy,
) -> None:
    corpus = make_corpus(size, customers=80, seed=3)
    # Some producers retry: exact repeats are duplicates, applied once.
    corpus += corpus[:50]
    book = book_all(corpus)
    h = book.contract.half_life_days
    at = datetime.now(UTC)
    results: dict[str, tuple[dict[str, float], set[tuple[str, str, str, float, datetime]]]] = {}

    for mode in ("structured", "binary"):
        await empty_tables(engine)
        settings = kafka_settings.model_copy(
            update={
                "input_topic": f"{kafka_settings.input_topic}.{mode}",
                "consumer_group": f"{kafka_settings.consumer_group}.{mode}",
            }
        )
        await ensure_topics(settings, partitions=3)
        await produce_events(settings, corpus, binary=mode == "binary")
        async with running_consumer(settings, engine, default_policy):
            await wait_consumed(checker, settings.consumer_group, len(corpus), within=60)
        await assert_ledger_matches(checker, corpus, book=book)
        results[mode] = (await stored_balances(checker, at, h), await _ledger(checker))

    await empty_tables(engine)
    client, lifespan = await open_client(database_url)
    try:
        for i in range(0, len(corpus), 1000):
            response = await client.post("/v1/events", json=corpus[i : i + 1000])
            assert response.status_code == 200, response.text
    finally:
        await close_client(client, lifespan)
    await assert_ledger_matches(checker, corpus, book=book)
    results["http"] = (await stored_balances(checker, at, h), await _ledger(checker))

    assert results["structured"][1] == results["http"][1]
    assert results["binary"][1] == results["http"][1]
    for mode in ("structured", "binary"):
        balances, http_balances = results[mode][0], results["http"][0]
        assert balances.keys() == http_balances.keys()
        for customer, value in balances.items():
            assert abs(value - http_balances[customer]) <= 1e-9 * max(1.0, abs(value)), customer
