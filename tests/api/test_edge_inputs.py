"""Inputs that reach a query are checked first: 4xx problem details, never a 500 (issue 7, item 4);
the alert feed's `cursor=`; trailing slashes without redirects; one body limit for every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.app import create_app
from service.domain.policy import load_policy
from tests.support.app import close_client, make_settings, open_client
from tests.support.events import make_event
from tests.support.http import assert_problem, forged_cursor, get_ok, now, post_ok, rfc

CUSTOMER_PATHS = ("", "/balance", "/ledger", "/drivers")


@pytest.mark.parametrize("sub", CUSTOMER_PATHS)
@pytest.mark.parametrize("raw_id", ["a%00b", "%00", "a%0Ab", "a%C2%85b", "%FF", "a%ED%A0%80"])
async def test_an_id_ingest_would_refuse_is_a_422_on_every_customer_path(
    client: httpx.AsyncClient, raw_id: str, sub: str
) -> None:
    # NUL, a newline, a C1 control, bytes that are not UTF-8, an encoded surrogate.
    response = await client.get(f"/v1/customers/{raw_id}{sub}")
    assert_problem(response, status=422)
    # Said in words, not as the regular expression of the documented pattern.
    assert "customer" in response.json()["detail"]
    assert "\\u" not in response.json()["detail"]


async def test_put_with_an_id_ingest_would_refuse_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/customers/a%00b", json={"segment": "smb"})
    assert_problem(response, status=422)


async def test_segment_must_be_one_of_the_policy(client: httpx.AsyncClient) -> None:
    known = sorted(load_policy().segments)

    for segment in ("\x00", "gold", "SMB", ""):
        response = await client.get("/v1/at-risk", params={"segment": segment})
        body = assert_problem(response, status=422)
        assert body["known_segments"] == known, body
        for name in known:
            assert name in body["detail"], body

    assert (await get_ok(client, "/v1/at-risk", params={"segment": known[0]}))["items"] == []


@pytest.mark.parametrize(
    "key",
    [
        ["0001-01-01T00:00:00+05:00", 1],
        ["9999-12-31T23:00:00-05:00", 1],
        ["0001-01-01T00:00:00Z", 1],
        ["2026-01-01T00:00:00", 1],
        ["2026-01-01T00:00:00Z", -1],
        ["2026-01-01T00:00:00Z", 2**63],
        ["2026-01-01T00:00:00Z", "1"],
        ["a\x00b", 1],
        ["2026-01-01T00:00:00Z"],
    ],
)
async def test_a_ledger_cursor_out_of_range_is_a_422(
    client: httpx.AsyncClient, key: list[object]
) -> None:
    await post_ok(client, make_event(id="l1", subject="c1"))
    response = await client.get(
        "/v1/customers/c1/ledger", params={"cursor": forged_cursor(key=key)}
    )
    assert_problem(response, status=422)


@pytest.mark.parametrize(
    "key",
    [
        [1, -20.0, "a\x00b"],
        [1, -20.0, ""],
        [1, -20.0, 7],
        [1, "NaN", "c1"],
        [2, -20.0, "c1"],
        [True, -20.0, "c1"],
        [1, -20.0],
    ],
)
async def test_an_at_risk_cursor_out_of_range_is_a_422(
    client: httpx.AsyncClient, key: list[object]
) -> None:
    response = await client.get("/v1/at-risk", params={"cursor": forged_cursor(key=key)})
    assert_problem(response, status=422)


async def test_a_space_where_a_plus_was_meant_gets_a_hint(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="t1", subject="c1"))
    for path, name in (("/v1/customers/c1/balance", "at"), ("/v1/customers/c1/drivers", "since")):
        # An unencoded `+` in a query string arrives as a space.
        response = await client.get(f"{path}?{name}=2026-01-01T00:00:00+02:00")
        body = assert_problem(response, status=422)
        assert "%2B" in body["detail"], body
        ok = await client.get(f"{path}?{name}=2026-01-01T00:00:00%2B02:00")
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
async def test_a_time_parameter_out_of_range_is_a_422(
    client: httpx.AsyncClient, value: str
) -> None:
    await post_ok(client, make_event(id="t1", subject="c1"))
    for path, name in (("/v1/customers/c1/balance", "at"), ("/v1/customers/c1/drivers", "since")):
        assert_problem(await client.get(path, params={name: value}), status=422)


async def test_the_alert_feed_takes_cursor_as_well_as_after(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await post_ok(
            client, make_event(id=f"x{i}", subject=f"leaving{i}", type="cancellation.requested")
        )
    first = await get_ok(client, "/v1/alerts", params={"limit": 2})
    assert [a["customer_id"] for a in first["items"]] == ["leaving0", "leaving1"]
    assert first["next_cursor"] is not None

    rest = await get_ok(client, "/v1/alerts", params={"cursor": first["next_cursor"]})
    assert [a["customer_id"] for a in rest["items"]] == ["leaving2"]
    same = await get_ok(client, "/v1/alerts", params={"after": first["next_cursor"]})
    assert same["items"] == rest["items"]
    both = {"after": first["next_cursor"], "cursor": first["next_cursor"]}
    assert (await get_ok(client, "/v1/alerts", params=both))["items"] == rest["items"]

    for bad in (
        {"cursor": "x"},
        {"cursor": "-1"},
        {"cursor": str(2**63)},
        {"after": "0", "cursor": "1"},
    ):
        assert_problem(await client.get("/v1/alerts", params=bad), status=422)


async def test_a_trailing_slash_is_a_404_never_a_redirect(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="s1", subject="c1"))
    for path in ("/v1/at-risk/", "/v1/alerts/", "/v1/customers/c1/", "/v1/customers/c1/ledger/"):
        response = await client.get(path, headers={"host": "evil.example"})
        assert_problem(response, status=404)
        assert "location" not in response.headers


async def test_errors_of_the_framework_itself_are_problem_documents(
    client: httpx.AsyncClient,
) -> None:
    cases = [
        (404, await client.get("/no/such/path")),
        (405, await client.post("/v1/alerts")),
        (405, await client.request("OPTIONS", "/v1/policy")),
        (
            422,
            await client.put(
                "/v1/customers/c1",
                content=b"\xff\xfe",
                headers={"content-type": "application/json"},
            ),
        ),
        (422, await client.put("/v1/customers/c1", json={"segment": "gold"})),
    ]
    for status, response in cases:
        assert_problem(response, status=status)
    # Both methods of /v1/customers/{id} are allowed there, not only the first route's.
    response = await client.request("OPTIONS", "/v1/customers/c1")
    assert_problem(response, status=405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "PUT"}


async def counting(chunks: int, pulled: list[int]) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        pulled[0] += 1
        yield b" " * 512


async def test_every_body_is_limited_and_an_unread_one_closes_the_connection(
    clean: AsyncEngine, database_url: str
) -> None:
    client, lifespan = await open_client(database_url, max_body_bytes=2048)
    try:
        big = orjson.dumps({"segment": "x" * 4096})
        response = await client.put("/v1/customers/c1", content=big)
        assert_problem(response, status=413)
        assert response.headers["connection"] == "close"

        pulled = [0]
        response = await client.put(
            "/v1/customers/c1",
            content=counting(100, pulled),
            headers={"content-type": "application/json"},
        )
        assert_problem(response, status=413)
        assert pulled[0] == 2048 // 512 + 1
        assert_problem(await client.get("/v1/customers/c1"), status=404)
    finally:
        await close_client(client, lifespan)


async def test_metrics_need_the_metrics_scope_unless_metrics_auth_is_disabled(
    clean: AsyncEngine, database_url: str, tmp_path: object
) -> None:
    from tests.support.auth import bearer, write_keys_file

    keys = write_keys_file(directory=tmp_path)  # type: ignore[arg-type]
    settings = make_settings(database_url, auth="enabled", api_keys_file=keys)
    for metrics_auth, anonymous in (("enabled", 401), ("disabled", 200)):
        # RELBANK_METRICS_AUTH; model_copy sets it whether or not Settings declares it yet.
        app = create_app(settings.model_copy(update={"metrics_auth": metrics_auth}), load_policy())
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://relbank"
            ) as client,
        ):
            assert (await client.get("/metrics")).status_code == anonymous
            response = await client.get("/metrics", headers=bearer("prometheus"))
            assert response.status_code == 200
            # Only /metrics opens up: customer data still needs its key.
            assert_problem(await client.get("/v1/at-risk"), status=401)


async def test_balance_far_in_the_future_or_past_is_answered(client: httpx.AsyncClient) -> None:
    await post_ok(client, make_event(id="f1", subject="c1"))
    for at in (now() + timedelta(days=365 * 7000), now() - timedelta(days=365 * 2000)):
        response = await client.get("/v1/customers/c1/balance", params={"at": rfc(at)})
        assert response.status_code == 200, response.text


async def test_the_document_declares_what_the_api_answers(client: httpx.AsyncClient) -> None:
    document = await get_ok(client, "/openapi.json")
    problem = {"$ref": "#/components/schemas/ProblemOut"}
    assert "ProblemOut" in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    schema = content.get("schema", {})
                    # A $ref stands alone: no `type: string` beside it.
                    assert not ("$ref" in schema and "type" in schema), (path, method, status)
                    if int(status) >= 400:
                        assert (media, schema) == ("application/problem+json", problem), (
                            path,
                            method,
                            status,
                        )
            assert "503" in operation["responses"], (path, method)
    readyz = document["paths"]["/readyz"]["get"]["responses"]
    assert "application/problem+json" in readyz["503"]["content"]
    assert list(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [
        "text/plain"
    ]
    customer = document["paths"]["/v1/customers/{customer_id}"]["get"]["parameters"][0]
    assert customer["schema"]["type"] == "string"


@pytest.mark.parametrize("body", [b"\x80", b"\xff\xfe", b"{", b"\xef\xbb\xbf{}"])
async def test_a_body_that_is_not_json_text_is_a_documented_problem(
    client: httpx.AsyncClient, body: bytes
) -> None:
    document = await get_ok(client, "/openapi.json")
    posted = 0
    for template, item in document["paths"].items():
        path = template.replace("{customer_id}", "c1").replace("{name}", "w1")
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            posted += 1
            for media in operation["requestBody"]["content"]:
                response = await client.request(
                    method, path, content=body, headers={"content-type": media}
                )
                assert str(response.status_code) in operation["responses"], (
                    method,
                    template,
                    media,
                    response.status_code,
                    response.text,
                )
                assert_problem(response, status=response.status_code)
                assert 400 <= response.status_code < 500
    assert posted >= 4, "events, customers, webhooks and simulate take a body"


async def test_every_member_of_a_problem_is_declared(client: httpx.AsyncClient) -> None:
    from service.api.views import ProblemOut

    answers = [
        await client.put("/v1/customers/c1", json={"segment": "no-such-segment"}),
        await client.put("/v1/customers/c1", json={"segmnt": None}),
        await client.get("/v1/alerts", params={"limit": "many"}),
        await client.get("/v1/customers/never-seen"),
        await client.post("/v1/events", content=b"[]", headers={"content-type": "text/plain"}),
    ]
    members: set[str] = set()
    for response in answers:
        assert response.headers["content-type"] == "application/problem+json", response.text
        body = response.json()
        assert set(body) <= set(ProblemOut.model_fields), (set(body), response.text)
        ProblemOut.model_validate(body, strict=True)
        members |= set(body)
    assert {"errors", "known_segments"} <= members
