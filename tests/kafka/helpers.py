"""Shared by the Kafka tests: a corpus, an independent reference model, consumers in-process and
as processes, and readers of what landed in PostgreSQL and on the topics."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.domain.policy import Policy
from service.embedded import free_port
from service.kafka import codec
from service.kafka.client import ensure_topics, kafka_kwargs
from service.kafka.consumer import KafkaIngest
from service.settings import Settings
from tests.conftest import runtime_for

POLICY_FILE = Path(__file__).resolve().parents[2] / "service" / "default_policy.yaml"
ROOT = Path(__file__).resolve().parents[2]

# Types the corpus draws from: weighted ones, a banded one, and one the policy does not know.
_TYPES = [
    "support.resolved_first_contact",
    "sla.breached",
    "promise.broken",
    "renewal.signed",
    "proactive.fix",
    "complaint.raised",
    "survey.nps",
    "custom.not_in_policy",
]


def make_corpus(
    n: int, *, customers: int = 50, seed: int = 1, prefix: str = "e"
) -> list[dict[str, Any]]:
    """`n` valid events over `customers` customers in the past 200 days; ids `{prefix}{i}`."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for i in range(n):
        type_ = rng.choice(_TYPES)
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{prefix}{i}",
            "source": rng.choice(["zendesk", "/billing/eu", "crm"]),
            "type": type_,
            "subject": f"cust-{rng.randrange(customers):04d}",
            "time": (now - timedelta(seconds=rng.uniform(60, 200 * 86_400)))
            .isoformat()
            .replace("+00:00", "Z"),
        }
        if type_ == "survey.nps":
            event["data"] = {"score": rng.randrange(11), "comment": "ok"}
        elif rng.random() < 0.3:
            event["data"] = {"magnitude": round(rng.uniform(0, 3), 2)}
        if rng.random() < 0.1:
            event["traceparent"] = f"00-{i:032x}-{i:016x}-01"  # an extension attribute
        events.append(event)
    return events


class Reference:
    """The expected ledger, computed from the corpus and the policy *file*, not relbank's code:
    amount = weight (or the band's) × magnitude; B(t) = Σ amount · 2^(−Δ/h)."""

    def __init__(self, policy_file: Path = POLICY_FILE) -> None:
        document = yaml.safe_load(policy_file.read_text())
        self.moments: dict[str, Any] = document["moments"]
        self.half_life_days: float | None = document["half_life_days"]
        assert not document.get("opening_balance"), "the reference assumes no opening entry"

    def amount(self, event: Mapping[str, Any]) -> float:
        moment = self.moments.get(event["type"])
        if moment is None:
            return 0.0
        data = event.get("data") or {}
        weight = moment.get("weight")
        if weight is None:
            value = data.get(moment["field"])
            band = next(
                (b for b in moment["bands"] if value is not None and b["min"] <= value <= b["max"]),
                None,
            )
            if band is None:
                return 0.0
            weight = band["weight"]
        return float(weight) * float(data.get("magnitude", 1))

    def balances(self, events: Iterable[Mapping[str, Any]], at: datetime) -> dict[str, float]:
        """Balance at `at` of every customer; each (source, id) counts once."""
        seen: dict[tuple[str, str], Mapping[str, Any]] = {}
        for event in events:
            seen.setdefault((event["source"], event["id"]), event)
        terms: dict[str, list[float]] = {}
        for event in seen.values():
            t = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            age_days = (at - t).total_seconds() / 86_400
            decay = 1.0 if self.half_life_days is None else 2 ** (-age_days / self.half_life_days)
            terms.setdefault(event["subject"], []).append(self.amount(event) * decay)
        return {customer: math.fsum(values) for customer, values in terms.items()}


def checker_engine(database_url: str) -> AsyncEngine:
    """An engine the tests' `pg_terminate_backend` (on application_name 'relbank') leaves alone."""
    return create_async_engine(
        database_url, connect_args={"server_settings": {"application_name": "relbank-test"}}
    )


async def stored_balances(
    engine: AsyncEngine, at: datetime, half_life_days: float
) -> dict[str, float]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT customer_id, ref_balance, ref_time FROM accounts"))
        return {
            r.customer_id: r.ref_balance
            * 2 ** (-(at - r.ref_time).total_seconds() / 86_400 / half_life_days)
            for r in rows
        }


async def assert_ledger_matches(
    engine: AsyncEngine, corpus: list[dict[str, Any]], *, reference: Reference | None = None
) -> None:
    """Every valid event of the corpus booked exactly once, and every balance as the model says."""
    reference = reference or Reference()
    unique = {(e["source"], e["id"]) for e in corpus}
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
        entries = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
        twice = (
            await conn.execute(
                text(
                    "SELECT source, event_id FROM ledger_entries GROUP BY source, event_id "
                    "HAVING count(*) > 1 LIMIT 5"
                )
            )
        ).all()
        booked = {
            (r.source, r.event_id)
            for r in await conn.execute(text("SELECT source, event_id FROM ledger_entries"))
        }
    assert not twice, f"(source, id) booked more than once: {twice}"
    assert booked == unique, (
        f"missing {len(unique - booked)} e.g. {sorted(unique - booked)[:5]}; "
        f"unexpected {len(booked - unique)} e.g. {sorted(booked - unique)[:5]}"
    )
    assert stored == len(unique)
    assert entries == len(unique)
    at = datetime.now(UTC)
    assert reference.half_life_days is not None
    expected = reference.balances(corpus, at)
    actual = await stored_balances(engine, at, reference.half_life_days)
    assert actual.keys() == expected.keys()
    wrong = {
        c: (actual[c], expected[c])
        for c in expected
        if not math.isclose(actual[c], expected[c], rel_tol=1e-9, abs_tol=1e-9)
    }
    assert not wrong, (
        f"{len(wrong)} balances differ from the reference, e.g. {list(wrong.items())[:3]}"
    )


async def applied_offsets(engine: AsyncEngine, group: str) -> int:
    """Records the group has moved past, over all partitions (offsets start at 0)."""
    async with engine.connect() as conn:
        total = (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                    "WHERE consumer_group = :g"
                ),
                {"g": group},
            )
        ).scalar_one()
    return int(total)


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.2
) -> None:
    """Poll `check` until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)


async def wait_consumed(engine: AsyncEngine, group: str, records: int, *, within: float) -> None:
    async def done() -> bool:
        return await applied_offsets(engine, group) >= records

    await wait_for(done, within=within, what=f"{records} records consumed by {group}")


@asynccontextmanager
async def running_consumer(
    settings: Settings, engine: AsyncEngine, policy: Policy
) -> AsyncIterator[KafkaIngest]:
    """A consumer in this event loop, cancelled (as SIGTERM would) on exit."""
    rt = runtime_for(settings, engine, policy)
    await rt.app.activate_policy()
    ingest = KafkaIngest(rt)
    task = asyncio.create_task(ingest.run())
    try:
        yield ingest
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class DlqRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    all_headers: list[tuple[str, bytes]]


async def read_topic(settings: Settings, topic: str, *, quiet_seconds: float = 1.5) -> list[Any]:
    """Every record of `topic`, read until the end of each partition (by highwater)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_seconds:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if batch:
                quiet_since = time.monotonic()
            caught_up = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    caught_up = False
            if caught_up and not batch:
                break
        return records
    finally:
        await consumer.stop()


def dead_letters(records: Iterable[Any]) -> list[DlqRecord]:
    return [
        DlqRecord(r.key, r.value, {k: v for k, v in r.headers}, list(r.headers)) for r in records
    ]


class ConsumerProcess:
    """`relbank serve --role consumer` as a child process, with its own HTTP port (/readyz)."""

    def __init__(self, settings: Settings, log_dir: Path, name: str, **env: str) -> None:
        LEFTOVERS.append(self)
        self.settings = settings
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "RELBANK_DATABASE_URL": settings.database_url,
            "RELBANK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "RELBANK_INPUT_TOPIC": settings.input_topic,
            "RELBANK_DLQ_TOPIC": settings.dlq_topic,
            "RELBANK_ALERTS_TOPIC": settings.alerts_topic,
            "RELBANK_CONSUMER_GROUP": settings.consumer_group,
            "RELBANK_CONSUMER_MAX_RECORDS": str(settings.consumer_max_records),
            "RELBANK_CONSUMER_SESSION_TIMEOUT_SECONDS": str(
                settings.consumer_session_timeout_seconds
            ),
            "RELBANK_AUTH": "disabled",
            "RELBANK_PORT": str(self.port),
            "RELBANK_LOG_LEVEL": "INFO",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from service.cli import main; main(sys.argv[1:])",
                    "serve",
                    "--role",
                    "consumer",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM and wait for a clean shutdown (uvicorn re-raises SIGTERM once it is done, so
        the exit status is -SIGTERM); fail if it does not go."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM in {timeout}s") from None
        log = self.log()
        assert self.process.returncode in (0, -signal.SIGTERM), log[-3000:]
        assert log.rstrip().endswith(f"Finished server process [{self.process.pid}]"), log[-3000:]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{self.port}/readyz")
        return response.status_code, response.json()


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

# Consumer processes and streams a test started: killed after the test whatever happened to it
# (a test stopped by its timeout never runs its `finally`), so none writes into the next test.
LEFTOVERS: list[ConsumerProcess | Stream] = []

# How long a wait on a condition may take on a busy 2-core machine before the test fails (a
# passing run never waits this long: waits poll their condition).
PATIENCE = 180.0
# For a test whose stream runs until its scenario is done (`Stream`).
SLOW_TEST_TIMEOUT = 1200


async def _send_paced(
    producer: AIOKafkaProducer,
    topic: str,
    records: list[Record],
    *,
    per_second: float,
    chunk: int = 200,
) -> list[tuple[int, int]]:
    placed: list[tuple[int, int]] = []
    for i in range(0, len(records), chunk):
        started = time.monotonic()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records[i : i + chunk]
        ]
        for metadata in await asyncio.gather(*futures):
            placed.append((metadata.partition, metadata.offset))
        await asyncio.sleep(max(0.0, chunk / per_second - (time.monotonic() - started)))
    return placed


async def produce_stream(
    settings: Settings,
    records: list[Record],
    *,
    per_second: float,
    chunk: int = 200,
) -> list[tuple[int, int]]:
    """Produce (key, value, headers) records at about `per_second`; returns (partition, offset)
    of each, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        return await _send_paced(
            producer, settings.input_topic, records, per_second=per_second, chunk=chunk
        )
    finally:
        await producer.stop()


class Stream:
    """Records produced at about `per_second` from `start()` until `stop()`: a stream as long as
    the test needs, however slow the machine. Fresh corpus chunks (ids `s{seed}.{chunk}-{i}`),
    each with a poison record and a conflicting duplicate when `poison_every` is set.
    Only whole acknowledged chunks are counted in `records`, `booked`, `poison` and `placed`."""

    def __init__(
        self,
        settings: Settings,
        *,
        per_second: float,
        seed: int,
        customers: int = 300,
        poison_every: int | None = None,
    ) -> None:
        self.settings = settings
        self.per_second = per_second
        self.seed = seed
        self.customers = customers
        self.poison_every = poison_every
        LEFTOVERS.append(self)
        self.records: list[Record] = []
        self.booked: list[dict[str, Any]] = []  # the events a correct consumer books
        self.poison: set[int] = set()  # indexes into `records`
        self.placed: list[tuple[int, int]] = []  # (partition, offset) of each record
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            n = 0
            while not self._stopping.is_set():
                seed = self.seed * 1000 + n
                prefix = f"s{self.seed}.{n}-"
                if self.poison_every:
                    size = self.poison_every + 1  # one poison point per chunk
                    events = make_corpus(size, customers=self.customers, seed=seed, prefix=prefix)
                    records, booked, poison = with_poison(
                        events, every=self.poison_every, seed=seed
                    )
                else:
                    events = make_corpus(1000, customers=self.customers, seed=seed, prefix=prefix)
                    records, booked, poison = encode_mixed(events), events, set()
                placed = await _send_paced(
                    producer, self.settings.input_topic, records, per_second=self.per_second
                )
                self.poison |= {len(self.records) + i for i in poison}
                self.records += records
                self.booked += booked
                self.placed += placed
                n += 1
        finally:
            await producer.stop()

    async def stop(self) -> None:
        """Finish the chunk in flight and stop."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def kill(self) -> None:
        self.cancel()

    def dead_letter_origins(self) -> set[str]:
        topic = self.settings.input_topic
        return {f"{topic}/{self.placed[i][0]}/{self.placed[i][1]}" for i in self.poison}


def encode_mixed(events: list[dict[str, Any]]) -> list[Record]:
    """Every other event in binary mode, the rest structured."""
    return [
        (codec.encode_binary if i % 2 else codec.encode_structured)(event)
        for i, event in enumerate(events)
    ]


def with_poison(
    events: list[dict[str, Any]], *, every: int, seed: int = 0
) -> tuple[list[Record], list[dict[str, Any]], set[int]]:
    """The events encoded (mixed modes), with a record that is not JSON and a conflicting
    duplicate of an earlier event every `every` events. Returns the records, the events a
    correct consumer books (first of each (source, id)), and the indexes of the poison records."""
    rng = random.Random(seed)
    records = []
    poison: set[int] = set()
    for i, (event, record) in enumerate(zip(events, encode_mixed(events), strict=True)):
        records.append(record)
        if i and i % every == 0:
            poison.add(len(records))
            records.append((event["subject"].encode(), b"{not json", []))
            earlier = events[rng.randrange(i)]
            conflicting = dict(
                earlier,
                type="support.escalated"
                if earlier["type"] != "support.escalated"
                else "sla.breached",
            )
            poison.add(len(records))
            records.append(codec.encode_structured(conflicting))
    return records, events, poison


async def dlq_origins(settings: Settings) -> dict[str, str]:
    """origin → reason of every dead letter (several letters may share an origin)."""
    letters = dead_letters(await read_topic(settings, settings.dlq_topic))
    return {
        letter.headers["relbank-origin"].decode(): letter.headers["relbank-error"].decode()
        for letter in letters
    }


OFFSET_AUDIT_SQL = [
    "CREATE TABLE IF NOT EXISTS test_offset_audit (id bigserial PRIMARY KEY, "
    "consumer_group text, topic text, partition int, old bigint, new bigint)",
    "TRUNCATE test_offset_audit",
    """
    CREATE OR REPLACE FUNCTION test_offset_audit() RETURNS trigger AS $$
    BEGIN
      INSERT INTO test_offset_audit (consumer_group, topic, partition, old, new)
      VALUES (NEW.consumer_group, NEW.topic, NEW.partition,
              CASE WHEN TG_OP = 'UPDATE' THEN OLD.next_offset END, NEW.next_offset);
      RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS test_offset_audit ON consumer_offsets",
    "CREATE TRIGGER test_offset_audit AFTER INSERT OR UPDATE ON consumer_offsets "
    "FOR EACH ROW EXECUTE FUNCTION test_offset_audit()",
]


async def install_offset_audit(engine: AsyncEngine) -> None:
    """Record every committed move of a stored offset."""
    async with engine.begin() as conn:
        for statement in OFFSET_AUDIT_SQL:
            await conn.execute(text(statement))


async def remove_offset_audit(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER IF EXISTS test_offset_audit ON consumer_offsets"))


async def assert_offsets_only_moved_forward(engine: AsyncEngine, group: str) -> int:
    """No committed batch ever moved a stored offset backwards or kept it (what a stale batch
    applied by a zombie would do); returns how many moves were committed."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT topic, partition, old, new FROM test_offset_audit "
                    "WHERE consumer_group = :g ORDER BY id"
                ),
                {"g": group},
            )
        ).all()
    async with engine.begin() as conn:
        # The audit is the test's, not the schema's: leave the database as migrations made it.
        await conn.execute(text("DROP TABLE IF EXISTS test_offset_audit"))
        await conn.execute(text("DROP FUNCTION IF EXISTS test_offset_audit()"))
    backwards = [r for r in rows if r.old is not None and r.new <= r.old]
    assert not backwards, f"stored offsets moved backwards: {backwards[:5]}"
    return len(rows)


async def recreate_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([topic])

        async def gone() -> bool:
            return topic not in set(await admin.list_topics())

        await wait_for(gone, within=30, what=f"{topic} to be deleted")
    finally:
        await admin.close()
    await ensure_topics(settings, partitions=3)
