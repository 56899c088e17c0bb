"""The page and the API docs are served from the package, offline, with relative links only."""

from __future__ import annotations

import posixpath
import re

import httpx

from service.api.ui import UI_DIR

# Hosts the stock FastAPI docs and the vendored bundles would otherwise load things from.
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdn.redoc.ly", "fonts.googleapis.com")
_ATTRIBUTE_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"'#]+)["']""")
_IMPORT = re.compile(r"""from\s+["'](\.[^"']+)["']""")


async def test_root_and_ui_redirect_relatively_whatever_the_host(client: httpx.AsyncClient) -> None:
    for path in ("/", "/ui"):
        response = await client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 307, (path, response.text)
        assert response.headers["location"] == "ui/"
    followed = await client.get("/", follow_redirects=True)
    assert followed.url.path == "/ui/"
    assert followed.headers["content-type"].startswith("text/html")


async def test_every_asset_of_the_page_is_served(client: httpx.AsyncClient) -> None:
    index = (await client.get("/ui/")).text
    wanted = [u for u in _ATTRIBUTE_URL.findall(index) if not u.startswith("../")]
    assert "js/main.js" in wanted
    assert "vendor/uplot/uPlot.iife.min.js" in wanted
    # ES module imports, followed from main.js.
    queue, seen = ["js/main.js"], set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        source = (UI_DIR / path).read_text(encoding="utf-8")
        for target in _IMPORT.findall(source):
            queue.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), target)))
    assert {"js/api.js", "js/views/customer.js", "js/chart.js"} <= seen
    for path in set(wanted) | seen:
        response = await client.get(f"/ui/{path}")
        assert response.status_code == 200, path


async def test_docs_load_only_assets_of_the_service(client: httpx.AsyncClient) -> None:
    for page, script in (
        ("/docs", "ui/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/redoc", "ui/vendor/redoc/redoc.standalone.js"),
    ):
        response = await client.get(page)
        assert response.status_code == 200, page
        urls = _ATTRIBUTE_URL.findall(response.text)
        assert script in urls, (page, urls)
        for url in urls:
            assert not re.match(r"^(https?:)?//", url), (page, url)
            assert (await client.get(f"/{url}")).status_code == 200, (page, url)
        assert "openapi.json" in response.text


def test_no_served_file_names_a_cdn() -> None:
    for path in UI_DIR.rglob("*"):
        if path.suffix in {".js", ".css", ".html"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            for host in CDN_HOSTS:
                assert host not in text, (path, host)


async def test_openapi_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert schema["paths"]["/readyz"]["get"]["security"] == []
    assert "security" not in schema["paths"]["/v1/at-risk"]["get"]
    history = schema["paths"]["/v1/customers/{customer_id}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"customer_id", "from", "to", "points"}
