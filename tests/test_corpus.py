"""A corpus of thousands of events through the public API only, posted singly, in batches and
concurrently, checked against a model written from README alone (it reads the policy YAML
itself and shares no code with the service's arithmetic)."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import DEFAULT_POLICY_PATH
from tests.conftest import close_client, open_client

POLICY: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
H = float(POLICY["half_life_days"])
CUSTOMERS = [f"k{i:03d}" for i in range(40)]


def parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def model_amount(event: dict[str, Any], segment: str | None) -> float:
    moment = POLICY["moments"].get(event["type"])
    if moment is None:
        return 0.0
    data = event.get("data") or {}
    weight = moment.get("weight")
    if weight is None:
        value = data.get(moment["field"])
        if not isinstance(value, int | float) or isinstance(value, bool):
            return 0.0
        weight = next((b["weight"] for b in moment["bands"] if b["min"] <= value <= b["max"]), 0.0)
    multiplier = POLICY["segments"][segment].get("weight_multiplier", 1) if segment else 1
    return float(weight) * float(data.get("magnitude", 1)) * float(multiplier)


def model_balance(entries: list[tuple[float, datetime]], at: datetime) -> float:
    return math.fsum(
        a * 2 ** (-(at - t).total_seconds() / 86400 / H) for a, t in entries if t <= at
    )


def thresholds(segment: str | None) -> tuple[float, float]:
    t = POLICY["thresholds"]
    if segment and "thresholds" in POLICY["segments"][segment]:
        t = POLICY["segments"][segment]["thresholds"]
    return float(t["at_risk_below"]), float(t["recover_at_or_above"])


@dataclass
class Customer:
    segment: str | None = None
    entries: list[tuple[float, datetime]] = field(default_factory=list)
    status: str = "ok"
    alerts: list[str] = field(default_factory=list)

    def evaluate(self, now: datetime) -> None:
        below, recover = thresholds(self.segment)
        balance = model_balance(self.entries, now)
        if self.status == "ok" and balance < below:
            self.status = "at_risk"
            self.alerts.append("at_risk")
        elif self.status == "at_risk" and balance >= recover:
            self.status = "ok"
            self.alerts.append("recovered")


def make_corpus(seed: int, n: int = 2400) -> list[dict[str, Any]]:
    """Valid events with duplicates, conflicts, backdated and slightly-future times, unknown types,
    band fields and magnitudes, plus invalid envelopes of several kinds."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    types = [*POLICY["moments"], "crm.note.added", "unknown.kind"]
    out: list[dict[str, Any]] = []
    for i in range(n):
        when = now - timedelta(days=rng.choice([0.01, 1, 30, 200, 700]) * rng.random())
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"ev-{i}",
            "source": rng.choice(["zendesk", "crm", "/billing/eu"]),
            "type": rng.choice(types),
            "subject": rng.choice(CUSTOMERS),
            "time": when.isoformat(),
        }
        if event["type"].startswith("survey."):
            if rng.random() < 0.9:
                event["data"] = {"score": rng.choice([0, 3, 5, 7, 8, 9, 10, 11, "x"])}
        elif rng.random() < 0.3:
            event["data"] = {"magnitude": rng.choice([0, 0.5, 2, 3.25]), "note": "kept"}
        out.append(event)
        roll = rng.random()
        if roll < 0.08:
            out.append(dict(event))  # duplicate
        elif roll < 0.12:
            out.append({**event, "type": "sla.breached"})  # conflict: same pair, other content
        elif roll < 0.16:
            bad = dict(event, id=f"bad-{i}")
            kind = rng.randrange(5)
            if kind == 0:
                del bad["subject"]
            elif kind == 1:
                bad["time"] = "yesterday"
            elif kind == 2:
                bad["time"] = (now + timedelta(hours=2)).isoformat()
            elif kind == 3:
                bad["data"] = {"magnitude": -1}
            else:
                bad["specversion"] = "0.3"
            out.append(bad)
    rng.shuffle(out)
    return out


def valid(event: dict[str, Any]) -> bool:
    return (
        "subject" in event
        and event["specversion"] == "1.0"
        and event["time"] != "yesterday"
        and parse(event["time"]) < datetime.now(UTC) + timedelta(minutes=5)
        and (event.get("data") or {}).get("magnitude", 1) >= 0
    )


class Model:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = defaultdict(Customer)
        self.accepted: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, batch: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        """Book what the model says is new; check each result against the model."""
        touched: set[str] = set()
        now = datetime.now(UTC)
        for event, result in zip(batch, results, strict=True):
            if not valid(event):
                assert result["outcome"] == "rejected", (event, result)
                continue
            key = (event["source"], event["id"])
            seen = self.accepted.get(key)
            if seen is not None:
                assert result["outcome"] == ("duplicate" if seen == event else "conflict"), result
                continue
            self.accepted[key] = event
            customer = self.customers[event["subject"]]
            amount = model_amount(event, customer.segment)
            weighed = event["type"] in POLICY["moments"] and not _band_miss(event)
            assert result["outcome"] == ("applied" if weighed else "unweighted"), (event, result)
            customer.entries.append((amount, min(parse(event["time"]), now)))
            touched.add(event["subject"])
        for customer_id in touched:
            self.customers[customer_id].evaluate(now)

    def segment(self, customer_id: str, segment: str) -> None:
        customer = self.customers[customer_id]
        customer.segment = segment
        customer.evaluate(datetime.now(UTC))


def _band_miss(event: dict[str, Any]) -> bool:
    moment = POLICY["moments"].get(event["type"], {})
    if "bands" not in moment:
        return False
    value = (event.get("data") or {}).get(moment["field"])
    if not isinstance(value, int | float) or isinstance(value, bool):
        return True
    return not any(b["min"] <= value <= b["max"] for b in moment["bands"])


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


async def check_against_model(
    client: httpx.AsyncClient, model: Model, *, exact_alerts: bool
) -> None:
    at = datetime.now(UTC)
    for customer_id in CUSTOMERS:
        customer = model.customers.get(customer_id)
        r = await client.get(f"/v1/customers/{customer_id}")
        if customer is None or not customer.entries:
            assert r.status_code == 404
            continue
        body = r.json()
        assert body["entries"] == len(customer.entries)
        assert body["segment"] == customer.segment
        # Point-in-time balances from the ledger, at three moments, against the model.
        for when in (at, at - timedelta(days=3), at - timedelta(days=250)):
            got = (
                await client.get(
                    f"/v1/customers/{customer_id}/balance", params={"at": when.isoformat()}
                )
            ).json()["balance"]
            want = model_balance(customer.entries, when)
            assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (customer_id, when)
        below, recover = thresholds(customer.segment)
        balance = model_balance(customer.entries, at)
        if exact_alerts:
            assert body["status"] == customer.status, customer_id
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
        assert len(seen) == len(set(seen)) == len(customer.entries)
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
    for customer_id, customer in model.customers.items():
        kinds = alerts.get(customer_id, [])
        # Transitions alternate, starting from ok, and end in the status shown.
        assert all(k == ("at_risk" if i % 2 == 0 else "recovered") for i, k in enumerate(kinds))
        if exact_alerts:
            assert kinds == customer.alerts, customer_id


@pytest.mark.parametrize("mode", ["single", "batches", "concurrent"])
async def test_corpus(mode: str, clean: AsyncEngine, database_url: str) -> None:
    corpus = make_corpus(seed=11, n=700 if mode == "single" else 2400)
    client, lifespan = await open_client(database_url)
    model = Model()
    try:
        if mode == "concurrent":
            # Conflicting pairs race here, so the model learns the winner from the store: post
            # first, then fold in per-pair results in the order the service reports them.
            chunks = [corpus[i : i + 60] for i in range(0, len(corpus), 60)]
            sem = asyncio.Semaphore(8)

            async def send(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
                async with sem:
                    return await post(client, chunk)

            results = await asyncio.gather(*(send(c) for c in chunks))
            winners = {
                (e["source"], e["id"]): e
                for chunk, res in zip(chunks, results, strict=True)
                for e, r in zip(chunk, res, strict=True)
                if r["outcome"] in ("applied", "unweighted")
            }
            for key, event in winners.items():
                model.accepted[key] = event
                model.customers[event["subject"]].entries.append(
                    (model_amount(event, None), min(parse(event["time"]), datetime.now(UTC)))
                )
            await check_against_model(client, model, exact_alerts=False)
            return
        size = 1 if mode == "single" else 97
        segment_points = {
            len(corpus) // 3: ("k001", "enterprise"),
            len(corpus) // 2: ("k002", "strategic"),
        }
        for start in range(0, len(corpus), size):
            batch = corpus[start : start + size]
            model.apply(batch, await post(client, batch))
            for point, (customer_id, segment) in segment_points.items():
                if start <= point < start + size:
                    r = await client.put(f"/v1/customers/{customer_id}", json={"segment": segment})
                    assert r.status_code == 200, r.text
                    model.segment(customer_id, segment)
        await check_against_model(client, model, exact_alerts=True)
    finally:
        await close_client(client, lifespan)
