"""POST /v1/events with one event (README): outcomes, duplicates, conflicts, every
invalid-envelope reason, clock skew, content types."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from tests.support.events import ago, make_event
from tests.support.http import assert_problem, get_ok, now, post_ok, rfc, whole_ledger
from tests.support.oracle import HALF_LIFE_DAYS, balance_at, close, parse_time


async def test_applied_event_books_its_weight_decayed_since_it_happened(
    client: httpx.AsyncClient,
) -> None:
    happened = now() - timedelta(minutes=1)
    result = await post_ok(client, make_event(id="a1", subject="c1", time=rfc(happened)))

    assert result["outcome"] == "applied"
    assert (result["source"], result["id"], result["customer_id"]) == ("zendesk", "a1", "c1")
    assert close(result["balance"], balance_at([(6.0, happened)], now()))
    assert result["balance"] < 6.0  # a minute of decay is visible, not rounded away

    [entry] = await whole_ledger(client, "c1")
    assert entry["outcome"] == "applied"
    assert entry["amount"] == 6.0
    assert entry["pillar"] == "resolution"
    assert entry["reason"] is None
    assert parse_time(entry["effective_at"]) == happened
    customer = await get_ok(client, "/v1/customers/c1")
    assert close(customer["balance"], balance_at([(6.0, happened)], now()))


async def test_unknown_type_is_stored_unweighted_with_a_reason(client: httpx.AsyncClient) -> None:
    result = await post_ok(client, make_event(id="u1", subject="c1", type="crm.note.added"))

    assert result["outcome"] == "unweighted"
    assert result["balance"] == 0.0
    [entry] = await whole_ledger(client, "c1")
    assert entry["outcome"] == "unweighted"
    assert entry["amount"] == 0.0
    assert entry["type"] == "crm.note.added"
    assert isinstance(entry["reason"], str)
    assert "crm.note.added" in entry["reason"]
    customer = await get_ok(client, "/v1/customers/c1")
    assert customer["entries"] == 1


@pytest.mark.parametrize(
    ("data", "outcome", "amount"),
    [
        ({"score": 0}, "applied", -12.0),
        ({"score": 3}, "applied", -12.0),
        ({"score": 6}, "applied", -12.0),
        ({"score": 7}, "applied", 0.0),
        ({"score": 8}, "applied", 0.0),
        ({"score": 9}, "applied", 10.0),
        ({"score": 10}, "applied", 10.0),
        ({"score": 9, "magnitude": 2}, "applied", 20.0),
        (None, "unweighted", 0.0),
        ({"comment": "no score"}, "unweighted", 0.0),
        ({"score": "9"}, "unweighted", 0.0),
        ({"score": 11}, "unweighted", 0.0),
        ({"score": 6.5}, "unweighted", 0.0),
    ],
)
async def test_band_field_picks_the_weight(
    client: httpx.AsyncClient, data: dict[str, Any] | None, outcome: str, amount: float
) -> None:
    happened = now() - timedelta(minutes=1)
    result = await post_ok(
        client,
        make_event(id="n1", subject="c1", type="survey.nps", time=rfc(happened), data=data),
    )

    assert result["outcome"] == outcome
    assert close(result["balance"], balance_at([(amount, happened)], now()))
    [entry] = await whole_ledger(client, "c1")
    assert entry["outcome"] == outcome
    assert entry["amount"] == amount
    assert entry["pillar"] == "empathy"
    if outcome == "unweighted":
        assert isinstance(entry["reason"], str)
        assert "score" in entry["reason"]
    else:
        assert entry["reason"] is None


@pytest.mark.parametrize(
    ("magnitude", "amount"),
    [(0, 0.0), (0.5, 3.0), (2.5, 15.0), (1000, 6000.0)],
)
async def test_magnitude_scales_the_weight(
    client: httpx.AsyncClient, magnitude: float, amount: float
) -> None:
    happened = now() - timedelta(minutes=1)
    result = await post_ok(
        client,
        make_event(id="m1", subject="c1", time=rfc(happened), data={"magnitude": magnitude}),
    )

    assert result["outcome"] == "applied"
    assert close(result["balance"], balance_at([(amount, happened)], now()))
    [entry] = await whole_ledger(client, "c1")
    assert entry["amount"] == amount


async def test_the_same_event_again_is_a_duplicate_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    event = make_event(id="d1", subject="c1", data={"note": "x"}, traceparent="00-abc-def-01")
    first = await post_ok(client, event)
    before = await get_ok(client, "/v1/customers/c1")

    again = await post_ok(client, event)
    # Same content in another key order is still the same event.
    reordered = await post_ok(client, dict(reversed(list(event.items()))))

    assert first["outcome"] == "applied"
    for result in (again, reordered):
        assert result["outcome"] == "duplicate"
        assert (result["source"], result["id"], result["customer_id"]) == ("zendesk", "d1", "c1")
        assert close(result["balance"], first["balance"])
    after = await get_ok(client, "/v1/customers/c1")
    assert after["entries"] == before["entries"] == 1
    assert close(after["balance"], before["balance"])
    assert len(await whole_ledger(client, "c1")) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"type": "sla.breached"},
        {"data": {"magnitude": 2}},
        {"time": "2026-01-01T00:00:00Z"},
        {"subject": "c2"},
        {"ext": "differs"},
    ],
)
async def test_same_source_and_id_with_other_content_is_a_conflict(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    event = make_event(id="k1", subject="c1")
    await post_ok(client, event)
    before = await get_ok(client, "/v1/customers/c1")

    response = await client.post("/v1/events", json={**event, **change})

    problem = assert_problem(response, status=409)
    assert problem["reason"] == "conflict"
    after = await get_ok(client, "/v1/customers/c1")
    assert after == {**before, "balance": after["balance"]}
    assert close(after["balance"], before["balance"])
    [entry] = await whole_ledger(client, "c1")
    assert entry["type"] == "support.resolved_first_contact"
    assert (await client.get("/v1/customers/c2")).status_code == 404


def _with(**changes: Any) -> dict[str, Any]:
    event = make_event(id="bad-1", subject="victim")
    event.update(changes)
    return event


def _without(name: str) -> dict[str, Any]:
    event = make_event(id="bad-1", subject="victim")
    del event[name]
    return event


# One case per rule of README; each body breaks exactly that rule.
INVALID: list[tuple[str, bytes, str]] = [
    ("not json", b'{"specversion": "1.0", ', "not_json"),
    ("not json at all", b"hello", "not_json"),
    ("empty body", b"", "not_json"),
    *[
        (f"missing {name}", orjson.dumps(_without(name)), "missing_attribute")
        for name in ("specversion", "id", "source", "type", "subject", "time")
    ],
    ("null time", orjson.dumps(_with(time=None)), "missing_attribute"),
    ("specversion 0.3", orjson.dumps(_with(specversion="0.3")), "bad_specversion"),
    ("specversion number", orjson.dumps(_with(specversion=1.0)), "bad_specversion"),
    ("id empty", orjson.dumps(_with(id="")), "bad_attribute"),
    ("id too long", orjson.dumps(_with(id="i" * 257)), "bad_attribute"),
    ("id number", orjson.dumps(_with(id=7)), "bad_attribute"),
    ("source too long", orjson.dumps(_with(source="s" * 257)), "bad_attribute"),
    ("type too long", orjson.dumps(_with(type="t" * 129)), "bad_attribute"),
    ("datacontenttype number", orjson.dumps(_with(datacontenttype=5)), "bad_attribute"),
    ("subject control char", orjson.dumps(_with(subject="vic\x01tim")), "bad_subject"),
    ("subject too long", orjson.dumps(_with(subject="c" * 129)), "bad_subject"),
    ("subject empty", orjson.dumps(_with(subject="")), "bad_subject"),
    ("time without offset", orjson.dumps(_with(time="2026-01-01T00:00:00")), "bad_time"),
    ("time words", orjson.dumps(_with(time="yesterday")), "bad_time"),
    ("time number", orjson.dumps(_with(time=1_700_000_000)), "bad_time"),
    ("time 10 minutes ahead", orjson.dumps(_with(time=ago(minutes=-10))), "future_time"),
    ("time next year", orjson.dumps(_with(time=ago(days=-365))), "future_time"),
    ("data string", orjson.dumps(_with(data="hello")), "bad_data"),
    ("data list", orjson.dumps(_with(data=[1, 2])), "bad_data"),
    ("magnitude negative", orjson.dumps(_with(data={"magnitude": -1})), "bad_magnitude"),
    ("magnitude over 1000", orjson.dumps(_with(data={"magnitude": 1000.5})), "bad_magnitude"),
    ("magnitude string", orjson.dumps(_with(data={"magnitude": "2"})), "bad_magnitude"),
    ("magnitude bool", orjson.dumps(_with(data={"magnitude": True})), "bad_magnitude"),
    ("magnitude NaN literal", b'{"x": NaN}', "not_json"),
    ("too large", orjson.dumps(_with(data={"blob": "x" * (64 * 1024)})), "too_large"),
    ("string, not an object", b'"an event"', "not_object"),
    ("number, not an object", b"42", "not_object"),
    ("null, not an object", b"null", "not_object"),
    ("reserved source", orjson.dumps(_with(source="relbank")), "reserved_source"),
]


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_every_invalid_envelope_is_a_422_problem_with_its_reason(
    client: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    response = await client.post(
        "/v1/events", content=body, headers={"content-type": "application/cloudevents+json"}
    )

    problem = assert_problem(response, status=422)
    assert problem["reason"] == reason
    # Nothing was stored: the customer named in the body was never seen.
    assert (await client.get("/v1/customers/victim")).status_code == 404
    assert (await client.get("/v1/alerts")).json()["items"] == []


async def test_a_64_kib_event_is_accepted_and_one_byte_more_is_too_large(
    client: httpx.AsyncClient,
) -> None:
    """The limit is on the encoded event: exactly 64 KiB passes, 64 KiB + 1 does not."""
    when = rfc(now() - timedelta(minutes=1))

    def encoded(*, id: str, blob: str) -> bytes:
        return orjson.dumps(make_event(id=id, subject="c1", time=when, data={"blob": blob}))

    pad = 64 * 1024 - len(encoded(id="big1", blob=""))
    fits = encoded(id="big1", blob="x" * pad)
    over = encoded(id="big2", blob="x" * (pad + 1))
    assert (len(fits), len(over)) == (64 * 1024, 64 * 1024 + 1)

    ok = await client.post("/v1/events", content=fits)
    too_large = await client.post("/v1/events", content=over)

    assert ok.status_code == 200, ok.text
    assert ok.json()["outcome"] == "applied"
    assert assert_problem(too_large, status=422)["reason"] == "too_large"


async def test_an_event_slightly_in_the_future_is_booked_when_received(
    client: httpx.AsyncClient,
) -> None:
    before = now()
    result = await post_ok(
        client, make_event(id="f1", subject="c1", time=rfc(before + timedelta(minutes=2)))
    )
    after = now()

    assert result["outcome"] == "applied"
    assert close(result["balance"], 6.0)
    [entry] = await whole_ledger(client, "c1")
    effective_at = parse_time(entry["effective_at"])
    assert before <= effective_at <= after
    # Booked at receipt: already part of the balance now, not two minutes from now.
    balance = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(after)})
    assert close(balance["balance"], 6.0)


async def test_an_event_just_inside_the_skew_is_accepted(client: httpx.AsyncClient) -> None:
    result = await post_ok(client, make_event(id="f2", subject="c1", time=ago(minutes=-4.5)))
    assert result["outcome"] == "applied"


async def test_times_with_offsets_are_booked_in_utc(client: httpx.AsyncClient) -> None:
    happened = now() - timedelta(days=3)
    local = happened.astimezone(timezone(timedelta(hours=-7)))
    await post_ok(client, make_event(id="o1", subject="c1", time=local.isoformat()))

    [entry] = await whole_ledger(client, "c1")
    assert entry["effective_at"].endswith("Z")
    assert parse_time(entry["effective_at"]) == happened
    customer = await get_ok(client, "/v1/customers/c1")
    assert close(customer["balance"], balance_at([(6.0, happened)], now()))
    assert close(customer["balance"], 6.0 * 2 ** (-3 / HALF_LIFE_DAYS), rel=1e-5)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        "application/json",
    ],
)
async def test_structured_content_types_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/v1/events",
        content=orjson.dumps(make_event(id="ct1", subject="c1")),
        headers={"content-type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied"


async def test_batch_content_type_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events",
        content=orjson.dumps(
            [make_event(id="b1", subject="c1"), make_event(id="b2", subject="c1")]
        ),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 200, response.text
    assert [r["outcome"] for r in response.json()["results"]] == ["applied", "applied"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
async def test_other_content_types_are_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/v1/events",
        content=orjson.dumps(make_event(id="t1", subject="c1")),
        headers={"content-type": content_type},
    )
    assert_problem(response, status=415)
    assert (await client.get("/v1/customers/c1")).status_code == 404


@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00.000001Z",
        "1900-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",
    ],
)
async def test_extreme_but_well_formed_times_never_break_an_account(
    client: httpx.AsyncClient, time: str
) -> None:
    """An RFC 3339 time is either booked (200) or refused as `bad_time` (422); either way the
    customer's later events and reads go on working."""
    response = await client.post("/v1/events", json=make_event(id="old", subject="c1", time=time))
    happened = now() - timedelta(minutes=1)
    posted = [(6.0, happened)]
    if response.status_code == 422:
        assert assert_problem(response, status=422)["reason"] == "bad_time"
    else:
        assert response.status_code == 200, response.text
        posted.append((6.0, parse_time(time)))

    result = await post_ok(client, make_event(id="new", subject="c1", time=rfc(happened)))
    assert result["outcome"] == "applied"
    assert close(result["balance"], balance_at(posted, now()))
    customer = await get_ok(client, "/v1/customers/c1")
    assert close(customer["balance"], balance_at(posted, now()))
    t = now()
    balance = await get_ok(client, "/v1/customers/c1/balance", params={"at": rfc(t)})
    assert close(balance["balance"], balance_at(posted, t))
    ledger = await whole_ledger(client, "c1")
    for entry in ledger:
        assert parse_time(entry["effective_at"]).year >= 1
    assert await get_ok(client, "/v1/customers/c1/drivers")
