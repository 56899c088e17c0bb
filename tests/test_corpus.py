"""A corpus of thousands of events through the public API only, posted singly, in batches and
concurrently, checked against the contract's oracle (`tests.support.oracle`: it reads the policy
YAML itself and shares no code with the service's arithmetic)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app import close_client, open_client
from tests.support.corpus import customer_ids, make_corpus
from tests.support.oracle import Book

CUSTOMERS = customer_ids(40, prefix="k")


def corpus(seed: int, n: int) -> list[dict[str, Any]]:
    """Valid events with duplicates, conflicts, invalid envelopes of several kinds, backdated and
    slightly-future times, unknown types, band fields and magnitudes, in shuffled order."""
    return make_corpus(
        n,
        seed=seed,
        customers=CUSTOMERS,
        prefix="ev-",
        future=0.02,
        duplicates=0.08,
        conflicts=0.04,
        invalid=0.04,
        shuffle=True,
    )


async def post(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(batch) == 1:
        response = await client.post("/v1/events", json=batch[0])
        if response.status_code == 422:
            return [{"outcome": "rejected"}]
        if response.status_code == 409:
            return [{"outcome": "conflict"}]
        assert response.status_code == 200, response.text
        return [response.json()]
    response = await client.post("/v1/events", json=batch)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def check_against_model(client: httpx.AsyncClient, book: Book, *, exact_alerts: bool) -> None:
    at = datetime.now(UTC)
    for customer_id in CUSTOMERS:
        account = book.accounts.get(customer_id)
        r = await client.get(f"/v1/customers/{customer_id}")
        if account is None or not account.entries:
            assert r.status_code == 404
            continue
        body = r.json()
        assert body["entries"] == len(account.entries)
        assert body["segment"] == account.segment
        # Point-in-time balances from the ledger, at three moments, against the oracle.
        for when in (at, at - timedelta(days=3), at - timedelta(days=250)):
            got = (
                await client.get(
                    f"/v1/customers/{customer_id}/balance", params={"at": when.isoformat()}
                )
            ).json()["balance"]
            want = book.balance(customer_id, when)
            assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (customer_id, when)
        below, recover = book.contract.levels(account.segment)
        balance = book.balance(customer_id, at)
        if exact_alerts:
            assert body["status"] == account.status, customer_id
        elif balance < below - 1e-6:
            assert body["status"] == "at_risk"
        elif balance >= recover + 1e-6:
            assert body["status"] == "ok"
        # The ledger pages through every entry exactly once.
        seen: list[tuple[str, str]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(f"/v1/customers/{customer_id}/ledger", params=params)).json()
            seen += [(e["source"], e["id"]) for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(account.entries)
        assert set(seen) == set(account.events)
    alerts: dict[str, list[str]] = defaultdict(list)
    after = 0
    while True:
        page = (await client.get("/v1/alerts", params={"after": after, "limit": 50})).json()
        for item in page["items"]:
            assert item["alert_id"] > after
            after = item["alert_id"]
            alerts[item["customer_id"]].append(item["kind"])
        if not page["items"]:
            break
    for customer_id, account in book.accounts.items():
        kinds = alerts.get(customer_id, [])
        # Transitions alternate, starting from ok, and end in the status shown.
        assert all(k == ("at_risk" if i % 2 == 0 else "recovered") for i, k in enumerate(kinds))
        if exact_alerts:
            assert kinds == account.alerts, customer_id


@pytest.mark.parametrize(
    ("mode", "n"),
    [
        # One event per request is the slow way in: the inner loop posts 250 of them, the full
        # run adds 700.
        ("single", 250),
        pytest.param("single", 700, marks=pytest.mark.slow),
        ("batches", 2400),
        ("concurrent", 2400),
    ],
)
async def test_corpus(mode: str, n: int, clean: AsyncEngine, database_url: str) -> None:
    events = corpus(seed=11, n=n)
    client, lifespan = await open_client(database_url)
    book = Book()
    try:
        if mode == "concurrent":
            # Conflicting pairs race here, so the oracle learns the winner from the store: post
            # first, then book the events the service reports as booked.
            chunks = [events[i : i + 60] for i in range(0, len(events), 60)]
            sem = asyncio.Semaphore(8)

            async def send(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
                async with sem:
                    return await post(client, chunk)

            results = await asyncio.gather(*(send(c) for c in chunks))
            received_at = datetime.now(UTC)
            for chunk, res in zip(chunks, results, strict=True):
                for event, result in zip(chunk, res, strict=True):
                    if result["outcome"] in ("applied", "unweighted"):
                        assert book.offer(event, received_at=received_at) == result["outcome"]
            await check_against_model(client, book, exact_alerts=False)
            return
        size = 1 if mode == "single" else 97
        segment_points = {
            len(events) // 3: ("k0001", "enterprise"),
            len(events) // 2: ("k0002", "strategic"),
        }
        for start in range(0, len(events), size):
            batch = events[start : start + size]
            answers = await post(client, batch)
            expected = book.ingest(batch, received_at=datetime.now(UTC))
            wrong = [
                (e, r, x)
                for e, r, x in zip(batch, answers, expected, strict=True)
                if r["outcome"] != x
            ]
            assert not wrong, wrong
            for point, (customer_id, segment) in segment_points.items():
                if start <= point < start + size:
                    r = await client.put(f"/v1/customers/{customer_id}", json={"segment": segment})
                    assert r.status_code == 200, r.text
                    book.set_segment(customer_id, segment, at=datetime.now(UTC))
        await check_against_model(client, book, exact_alerts=True)
    finally:
        await close_client(client, lifespan)
