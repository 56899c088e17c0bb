"""README over HTTP: duplicates by meaning, repeated member names, one size rule, identifiers."""

from __future__ import annotations

from datetime import timedelta, timezone

import httpx
import orjson
import pytest

from tests.support.events import make_event
from tests.support.http import assert_problem, now, post_ok, rfc, whole_ledger


async def post_raw(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(
        "/v1/events", content=body, headers={"content-type": "application/cloudevents+json"}
    )


@pytest.mark.parametrize("spelling", [b"1.0", b"1e0", b"10E-1"])
async def test_a_number_written_otherwise_is_a_duplicate(
    client: httpx.AsyncClient, spelling: bytes
) -> None:
    event = orjson.dumps(make_event(id="n1", subject="c1", data={"magnitude": 1}))
    respelled = event.replace(b'"magnitude":1', b'"magnitude":' + spelling)
    assert respelled != event

    applied = await post_ok(client, orjson.loads(event))
    again = await post_raw(client, respelled)

    assert again.status_code == 200, again.text
    assert (applied["outcome"], again.json()["outcome"]) == ("applied", "duplicate")
    assert len(await whole_ledger(client, "c1")) == 1


@pytest.mark.parametrize("hours", [0, 1, -5])
async def test_a_time_written_in_another_offset_is_a_duplicate(
    client: httpx.AsyncClient, hours: int
) -> None:
    instant = now() - timedelta(minutes=1)
    event = make_event(id="t1", subject="c1", time=rfc(instant))
    respelled = {**event, "time": instant.astimezone(timezone(timedelta(hours=hours))).isoformat()}
    assert respelled["time"] != event["time"]

    applied = await post_ok(client, event)
    again = await post_ok(client, respelled)

    assert (applied["outcome"], again["outcome"]) == ("applied", "duplicate")
    assert len(await whole_ledger(client, "c1")) == 1


async def test_a_member_named_twice_is_not_json_and_books_nothing(
    client: httpx.AsyncClient,
) -> None:
    event = orjson.dumps(make_event(id="twice", subject="victimA"))
    body = event.replace(b'"subject":"victimA"', b'"subject":"victimA","subject":"victimB"')
    assert body != event

    problem = assert_problem(await post_raw(client, body), status=422)

    assert problem["reason"] == "not_json"
    for customer in ("victimA", "victimB"):
        assert (await client.get(f"/v1/customers/{customer}")).status_code == 404


async def test_an_event_measures_the_same_alone_and_in_a_batch(
    client: httpx.AsyncClient,
) -> None:
    """Padding is not the event: 70 KB of whitespace around a small event is accepted both ways,
    and an event over 64 KiB compact is too large both ways."""
    small = orjson.dumps(make_event(id="padded", subject="c1"))
    padded = small[:-1] + b" " * 70_000 + b"}"
    alone = await post_raw(client, padded)
    in_batch = await post_raw(client, b"[" + padded.replace(b"padded", b"padded-2") + b"]")
    assert alone.status_code == in_batch.status_code == 200, in_batch.text
    assert alone.json()["outcome"] == in_batch.json()["results"][0]["outcome"] == "applied"

    big = make_event(id="big", subject="c2", data={"blob": "x" * (64 * 1024)})
    problem = assert_problem(await post_raw(client, orjson.dumps(big)), status=422)
    [result] = (await post_ok(client, [big]))["results"]
    assert problem["reason"] == result["reason"] == "too_large"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("source", "a\nb", "bad_attribute"),
        ("id", "x\x7f", "bad_attribute"),
        ("type", "support.resolved_first_contact\u0085", "bad_attribute"),
        ("subject", "a\u200bb", "bad_subject"),
        ("subject", "\u202eevil", "bad_subject"),
        ("subject", "\ufeffab", "bad_subject"),
    ],
)
async def test_identifiers_with_control_or_format_characters_are_rejected(
    client: httpx.AsyncClient, name: str, value: str, reason: str
) -> None:
    event = {**make_event(id="ctl", subject="ab"), name: value}

    problem = assert_problem(await client.post("/v1/events", json=event), status=422)

    assert problem["reason"] == reason
    assert (await client.get("/v1/customers/ab")).status_code == 404
