"""What-if (`POST /v1/policy/simulate`, `relbank simulate`) against a model written here from
README alone (it reads policy documents as plain dicts and shares no code with
service.domain), over a corpus with segments, bands, unknown types, magnitudes, duplicates and
backdated events; then `relbank replay --policy` of the same file must land where the simulation
said; and the simulation must write nothing."""

from __future__ import annotations

import asyncio
import copy
import math
import os
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.policy import load_policy
from service.errors import CommandFailed
from service.storage.db import Database
from service.tools.simulate import simulate as print_simulation
from tests.support.app import apply, make_settings, relbank
from tests.support.db import TABLES
from tests.support.events import make_event
from tests.support.oracle import SEGMENT_CHANGED, Contract, hysteresis, read_policy

ROOT = Path(__file__).resolve().parents[1]
ACTIVE: dict[str, Any] = read_policy()

# ---- the model (README) ----------------------------------------------------------------


@dataclass
class Story:
    """One customer's events in arrival order, segment changes among them."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def under(self, doc: dict[str, Any]) -> tuple[list[tuple[float, datetime]], str | None]:
        """The ledger entries `doc` makes of the story, and the segment it ends in."""
        segment: str | None = None
        entries: list[tuple[float, datetime]] = []
        opening = float(doc.get("opening_balance") or 0)
        if opening and self.events:
            entries.append((opening, self.events[0]["at"]))
        for event in self.events:
            if event["type"] == SEGMENT_CHANGED:
                segment = event["data"]["segment"]
                continue
            entries.append((Contract(doc).amount(event, segment), event["at"]))
        return entries, segment


@dataclass
class Expected:
    accounts: int
    at_risk_now: int
    at_risk_simulated: int
    to_at_risk: int
    to_ok: int
    # customer -> (balance now, simulated, status now, simulated)
    outcomes: dict[str, tuple[float, float, str, str]]
    # customer -> the size of its terms, for the rounding tolerance of a sum that may cancel
    scale: dict[str, float]


def model(
    stories: dict[str, Story], status_now: dict[str, str], candidate: dict[str, Any], at: datetime
) -> Expected:
    """What the candidate makes of every story at `at`, each status carried forward from now."""
    outcomes = {}
    scale = {}
    for customer, story in stories.items():
        entries_now, _ = story.under(ACTIVE)
        entries, segment = story.under(candidate)
        scale[customer] = max(
            Contract(doc).balance([(abs(a), t) for a, t in e], at)
            for doc, e in ((ACTIVE, entries_now), (candidate, entries))
        )
        simulated = Contract(candidate).balance(entries, at)
        status = hysteresis(status_now[customer], simulated, *Contract(candidate).levels(segment))
        outcomes[customer] = (
            Contract(ACTIVE).balance(entries_now, at),
            simulated,
            status_now[customer],
            status,
        )
    values = list(outcomes.values())
    return Expected(
        accounts=len(outcomes),
        at_risk_now=sum(o[2] == "at_risk" for o in values),
        at_risk_simulated=sum(o[3] == "at_risk" for o in values),
        to_at_risk=sum(o[2] == "ok" and o[3] == "at_risk" for o in values),
        to_ok=sum(o[2] == "at_risk" and o[3] == "ok" for o in values),
        outcomes=outcomes,
        scale=scale,
    )


def near(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale))


def assert_matches(answer: dict[str, Any], want: Expected) -> None:
    for key in ("accounts", "at_risk_now", "at_risk_simulated", "to_at_risk", "to_ok"):
        assert answer[key] == getattr(want, key), (key, answer[key], getattr(want, key))
    changes = {c: abs(o[1] - o[0]) for c, o in want.outcomes.items()}
    movers = answer["movers"]
    for mover in movers:
        now, simulated, status_now, status = want.outcomes[mover["customer_id"]]
        scale = want.scale[mover["customer_id"]]
        assert near(mover["balance_now"], now, scale), (mover, now)
        assert near(mover["balance_simulated"], simulated, scale), (mover, simulated)
        assert (mover["status_now"], mover["status_simulated"]) == (status_now, status), mover
    shown = [abs(m["balance_simulated"] - m["balance_now"]) for m in movers]
    assert shown == sorted(shown, reverse=True)
    moved = [c for c, d in changes.items() if d > 1e-6]
    assert len(movers) == min(100, len(moved)), (len(movers), len(moved))
    smallest = min(shown, default=math.inf)
    listed = {m["customer_id"] for m in movers}
    missed = [c for c in moved if c not in listed and changes[c] > smallest * (1 + 1e-9)]
    assert not missed, missed


# ---- the corpus --------------------------------------------------------------------------------


@dataclass
class Corpus:
    stories: dict[str, Story]
    now: datetime


def _event(rng: random.Random, i: int, customer: str, now: datetime) -> dict[str, Any]:
    kind = rng.random()
    data: dict[str, Any] | None = None
    if kind < 0.6:
        type_ = rng.choice(
            [
                "sla.breached",
                "promise.broken",
                "support.resolved_first_contact",
                "renewal.signed",
                "cancellation.requested",
                "outage.affected",
                "proactive.fix",
            ]
        )
    elif kind < 0.8:
        type_ = "survey.nps"
        data = {"score": rng.choice([0, 3, 6, 7, 9, 10, 11, -1, "9", None, True])}
        if data["score"] is None:
            data = {}
    elif kind < 0.9:
        type_ = rng.choice(["chat.started", "invoice.sent"])  # not in any policy here
    else:
        type_ = rng.choice(["promise.kept", "billing.error"])
        data = {"magnitude": rng.choice([0, 0.5, 2.5, 10])}
    # Backdated: any time in the last 400 days, whatever the arrival order.
    at = now - timedelta(days=rng.uniform(0.01, 400), microseconds=rng.randrange(10**6))
    envelope = make_event(id=f"e{i}", subject=customer, type=type_, time=at.isoformat(), data=data)
    return {**envelope, "at": at}


async def build_corpus(
    engine: AsyncEngine, *, customers: int, n: int, seed: int, batch: int = 150
) -> Corpus:
    """Posts `n` events over `customers` customers in batches (some re-posted as duplicates),
    with segment changes between batches, through the application service; returns every
    customer's story in arrival order."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    app = relbank(engine, load_policy())
    ids = [f"c{i:03d}" for i in range(customers)]
    stories: dict[str, Story] = {}
    # A customer whose first event is a segment change: the opening entry goes there.
    await _segment(app, engine, stories, "c-first-segment", "strategic")
    posted: list[dict[str, Any]] = []
    for start in range(0, n, batch):
        events = [_event(rng, i, rng.choice(ids), now) for i in range(start, min(n, start + batch))]
        again = rng.sample(posted, min(5, len(posted)))  # duplicates: applied once
        await apply(engine, app.policy, [_envelope(e) for e in events + again])
        for event in events:
            stories.setdefault(event["subject"], Story()).events.append(event)
        posted += events
        for customer in rng.sample(sorted(stories), 3):
            segment = rng.choice(["enterprise", "smb", "strategic", None])
            await _segment(app, engine, stories, customer, segment)
    return Corpus(stories, now)


def _envelope(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "at"}


async def _segment(
    app: Any, engine: AsyncEngine, stories: dict[str, Story], customer: str, segment: str | None
) -> None:
    story = stories.setdefault(customer, Story())
    current = next(
        (e["data"]["segment"] for e in reversed(story.events) if e["type"] == SEGMENT_CHANGED),
        None,
    )
    await app.change_segment(customer, segment)
    if segment == current and story.events:
        return  # the same segment again stores nothing
    async with engine.connect() as conn:
        at = (
            await conn.execute(
                text(
                    "SELECT effective_at FROM events WHERE customer_id = :c AND type = :t "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                {"c": customer, "t": SEGMENT_CHANGED},
            )
        ).scalar_one()
    story.events.append({"type": SEGMENT_CHANGED, "data": {"segment": segment}, "at": at})


async def statuses(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT customer_id, status FROM accounts"))
        return {r.customer_id: r.status for r in rows}


def candidate(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ACTIVE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = value
    return doc


async def simulate(client: httpx.AsyncClient, doc: dict[str, Any], *, as_yaml: bool) -> Any:
    if as_yaml:
        response = await client.post(
            "/v1/policy/simulate",
            content=yaml.safe_dump(doc).encode(),
            headers={"content-type": "application/yaml"},
        )
    else:
        response = await client.post("/v1/policy/simulate", json=doc)
    assert response.status_code == 200, response.text
    return response.json()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---- the tests ---------------------------------------------------------------------------------

CANDIDATES = {
    "double-sla": candidate(version="double-sla"),
    "thresholds": candidate(
        version="thresholds",
        thresholds={"at_risk_below": -8, "recover_at_or_above": -2},
        segments__enterprise__thresholds={"at_risk_below": -40, "recover_at_or_above": -20},
    ),
    "half-life": candidate(version="half-life", half_life_days=30),
    "opening-and-bands": candidate(version="opening-and-bands", opening_balance=5),
}
CANDIDATES["double-sla"]["moments"]["sla.breached"]["weight"] = -20
CANDIDATES["opening-and-bands"]["moments"]["survey.nps"]["bands"][0]["weight"] = -30


async def test_simulate_matches_the_model(clean: AsyncEngine, client: httpx.AsyncClient) -> None:
    corpus = await build_corpus(clean, customers=140, n=3000, seed=11)
    current = await statuses(clean)
    assert current.keys() == corpus.stories.keys()
    for i, (name, doc) in enumerate(CANDIDATES.items()):
        answer = await simulate(client, doc, as_yaml=i % 2 == 0)
        assert answer["policy_version"] == name
        want = model(corpus.stories, current, doc, parse(answer["at"]))
        assert_matches(answer, want)
        # The candidates are chosen so that each one changes something.
        assert answer["movers"] or answer["to_at_risk"] + answer["to_ok"], name
    thresholds = await simulate(client, CANDIDATES["thresholds"], as_yaml=False)
    assert thresholds["movers"] == [], "thresholds alone move no balance"


async def test_the_active_policy_changes_nothing(
    clean: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await build_corpus(clean, customers=60, n=1200, seed=12)
    # Transitions decay alone brought due would be changes (replay would make them): settle them.
    await relbank(clean, load_policy()).sweep()
    answer = await simulate(client, ACTIVE, as_yaml=True)
    assert answer["movers"] == []
    assert answer["to_at_risk"] == answer["to_ok"] == 0
    assert answer["at_risk_simulated"] == answer["at_risk_now"]
    assert answer["accounts"] == 61
    assert answer["events"] == await _count(clean, "SELECT count(*) FROM events")


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def contents(engine: AsyncEngine) -> dict[str, tuple[int, str]]:
    """Row count and a digest of the rows of every relbank table."""
    found = {}
    async with engine.connect() as conn:
        for table in TABLES.split(", "):
            row = (
                await conn.execute(
                    text(
                        f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' "
                        f"ORDER BY t::text), '')) AS digest FROM {table} t"
                    )
                )
            ).one()
            found[table] = (row.n, row.digest)
    return found


async def relbank_command(*args: str, database_url: str) -> tuple[int, str, str]:
    """Run `relbank ARGS` in a process of its own; (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELBANK_")}
    env["RELBANK_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_policy(directory: Path, doc: dict[str, Any]) -> Path:
    path = directory / f"{doc['version']}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.mark.slow
async def test_simulate_then_replay_agree_and_simulate_writes_nothing(
    clean: AsyncEngine, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    await build_corpus(clean, customers=80, n=1500, seed=13)
    doc = candidate(
        version="next",
        half_life_days=45,
        thresholds={"at_risk_below": -12, "recover_at_or_above": -4},
    )
    doc["moments"]["promise.broken"]["weight"] = -25
    path = write_policy(tmp_path, doc)
    before = await contents(clean)
    answer = await simulate(client, doc, as_yaml=True)
    code, out, err = await relbank_command(
        "simulate", "--policy", str(path), "--json", database_url=database_url
    )
    assert code == 0, err
    printed = orjson.loads(out)
    assert await contents(clean) == before, "simulate wrote something"
    assert "simulate" in err  # the progress bar, on stderr
    for key in ("policy_version", "events", "accounts", "at_risk_now", "at_risk_simulated"):
        assert printed[key] == answer[key], key
    assert [m["customer_id"] for m in printed["movers"]] == [
        m["customer_id"] for m in answer["movers"]
    ]

    alerts_before = await _count(clean, "SELECT count(*) FROM alerts")
    code, out, err = await relbank_command(
        "replay", "--policy", str(path), database_url=database_url
    )
    assert code == 0, err

    at = parse(answer["at"])
    async with clean.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT customer_id, ref_balance, ref_time, status FROM accounts")
            )
        ).all()
        raised = (
            await conn.execute(
                text("SELECT kind, count(*) AS n FROM alerts WHERE alert_id > :a GROUP BY kind"),
                {"a": alerts_before},
            )
        ).all()
    replayed = {
        r.customer_id: (
            0.0
            if r.ref_time is None
            else r.ref_balance * 2.0 ** (-(at - r.ref_time).total_seconds() / 86400 / 45),
            r.status,
        )
        for r in rows
    }
    assert len(replayed) == answer["accounts"]
    assert sum(s == "at_risk" for _, s in replayed.values()) == answer["at_risk_simulated"]
    kinds = {r.kind: r.n for r in raised}
    assert kinds.get("at_risk", 0) == answer["to_at_risk"]
    assert kinds.get("recovered", 0) == answer["to_ok"]
    # A half-life change moves every balance that is not 0: all of them are movers here.
    nonzero = [c for c, (b, _) in replayed.items() if abs(b) > 1e-9]
    assert len(answer["movers"]) == len(nonzero)
    for mover in answer["movers"]:
        b, status = replayed[mover["customer_id"]]
        assert near(b, mover["balance_simulated"], abs(b)), (mover, b)
        assert status == mover["status_simulated"], mover


async def test_the_snapshot_refuses_writes(clean: AsyncEngine) -> None:
    async with Database(clean).snapshot() as conn:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await conn.execute(text("DELETE FROM accounts"))


@pytest.mark.slow
async def test_cli_prints_a_table(
    clean: AsyncEngine, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    await build_corpus(clean, customers=30, n=300, seed=14)
    doc = candidate(version="harsh")
    doc["moments"]["sla.breached"]["weight"] = -60
    code, out, err = await relbank_command(
        "simulate", "--policy", str(write_policy(tmp_path, doc)), database_url=database_url
    )
    assert code == 0, err
    answer = await simulate(client, doc, as_yaml=False)
    lines = out.splitlines()
    assert lines[0].startswith(f"policy harsh: {answer['events']} events replayed")
    assert f"at risk   {answer['at_risk_now']:>10}{answer['at_risk_simulated']:>11}" in lines
    assert f"ok -> at_risk: {answer['to_at_risk']}    at_risk -> ok: {answer['to_ok']}" in lines
    first = answer["movers"][0]
    assert any(line.startswith(first["customer_id"] + " ") for line in lines), out


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"thresholds": {"at_risk_below": -5, "recover_at_or_above": -15}}, "thresholds"),
        ({"half_life_days": -3}, "half_life_days"),
        ({"moments": {"x.y": {"pillar": "p", "weight": "heavy"}}}, "moments.x.y.weight"),
    ],
)
def test_a_bad_policy_file_names_the_key(
    database_url: str, tmp_path: Path, document: dict[str, Any], named: str
) -> None:
    path = write_policy(tmp_path, {**candidate(version="bad"), **document})
    with pytest.raises(CommandFailed) as failed:
        print_simulation(make_settings(database_url), load_policy(), path)
    assert failed.value.code == 2
    assert str(failed.value).startswith(f"bad policy: {path}: {named}"), failed.value


@pytest.mark.slow
async def test_cli_bad_policy_file_is_one_line(
    clean: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    doc = {**candidate(version="bad"), "half_life_days": "long"}
    path = write_policy(tmp_path, doc)
    code, out, err = await relbank_command(
        "simulate", "--policy", str(path), database_url=database_url
    )
    assert (code, out) == (2, "")
    [line] = err.strip().splitlines()
    assert line.startswith(f"relbank simulate: bad policy: {path}: half_life_days"), line


@pytest.mark.slow
async def test_cli_unreachable_database_names_the_variable(tmp_path: Path) -> None:
    code, _, err = await relbank_command(
        "simulate",
        "--policy",
        str(write_policy(tmp_path, candidate(version="any"))),
        database_url="postgresql://relbank:secret@127.0.0.1:1/relbank",
    )
    assert code == 1
    [line] = err.strip().splitlines()
    assert "RELBANK_DATABASE_URL" in line
    assert "secret" not in line
    assert "Traceback" not in err
