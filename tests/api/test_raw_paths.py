"""A customer id in a path is ONE percent-encoded segment, routed on the raw path (README):
every id ingest accepts is addressable, and none collides with a sub-resource (issue 7, item 5)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.support.events import make_event
from tests.support.http import assert_problem, get_ok, post_ok

ODD_IDS = [
    "acme/ledger",
    "acme/balance",
    "/",
    "a/b/c/",
    "100%",
    "a%2Fb",
    "%00",
    "..",
    ".",
    "../etc",
    "a..b",
    "with space",
    " ",
    "a+b",
    "a?b#c",
    "semi;colon=1",
    "ümlaut-客户-🙂",
    "x" * 128,
]


def segment(customer_id: str) -> str:
    """The id as one path segment; dots too, or a client would resolve `.` and `..`."""
    return quote(customer_id, safe="").replace(".", "%2E")


@pytest.mark.parametrize("customer_id", ODD_IDS)
async def test_every_id_ingest_accepts_is_addressable(
    client: httpx.AsyncClient, customer_id: str
) -> None:
    posted = await post_ok(client, make_event(id="o1", subject=customer_id))
    assert posted["customer_id"] == customer_id
    await post_ok(client, make_event(id="o2", subject="acme"))
    base = f"/v1/customers/{segment(customer_id)}"

    customer = await get_ok(client, base)
    assert customer["customer_id"] == customer_id
    assert customer["entries"] == 1
    assert (await get_ok(client, f"{base}/balance"))["customer_id"] == customer_id
    assert (await get_ok(client, f"{base}/drivers"))["customer_id"] == customer_id
    ledger = await get_ok(client, f"{base}/ledger")
    assert [(e["source"], e["id"]) for e in ledger["items"]] == [("zendesk", "o1")]

    changed = await client.put(base, json={"segment": "smb"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["customer_id"] == customer_id
    assert (await get_ok(client, base))["segment"] == "smb"
    assert (await get_ok(client, "/v1/customers/acme"))["segment"] is None


async def test_an_encoded_slash_is_part_of_the_id_a_plain_one_a_separator(
    client: httpx.AsyncClient,
) -> None:
    await post_ok(client, make_event(id="a1", subject="acme"))
    await post_ok(client, make_event(id="a2", subject="acme"))
    await post_ok(client, make_event(id="l1", subject="acme/ledger"))

    other = await get_ok(client, "/v1/customers/acme%2Fledger")
    assert other["customer_id"] == "acme/ledger"
    assert other["entries"] == 1
    # Lower-case hex is the same segment.
    assert (await get_ok(client, "/v1/customers/acme%2fledger"))["customer_id"] == "acme/ledger"

    ledger = await get_ok(client, "/v1/customers/acme/ledger")
    assert "customer_id" not in ledger
    assert sorted(e["id"] for e in ledger["items"]) == ["a1", "a2"]

    theirs = await get_ok(client, "/v1/customers/acme%2Fledger/ledger")
    assert [e["id"] for e in theirs["items"]] == ["l1"]


@pytest.mark.parametrize("sub", ["balance", "ledger", "drivers"])
async def test_put_on_a_sub_resource_is_405_and_creates_nothing(
    client: httpx.AsyncClient, sub: str
) -> None:
    await post_ok(client, make_event(id="a1", subject="acme"))

    response = await client.put(f"/v1/customers/acme/{sub}", json={"segment": "smb"})

    assert_problem(response, status=405)
    assert [m.strip() for m in response.headers["allow"].split(",")] == ["GET"]
    assert_problem(await client.get(f"/v1/customers/acme%2F{sub}"), status=404)
    assert (await get_ok(client, "/v1/customers/acme"))["segment"] is None


async def test_more_than_one_segment_after_the_id_is_not_a_route(
    client: httpx.AsyncClient,
) -> None:
    await post_ok(client, make_event(id="a1", subject="acme"))
    for path in ("/v1/customers/acme/ledger/x", "/v1/customers/acme/nothing", "/v1/customers/"):
        assert_problem(await client.get(path), status=404)
