"""The built-in page for people (`/ui/`) and the API docs, all served from files in the package.

Nothing is loaded from a CDN, so the page, Swagger UI and ReDoc work offline. Every link and
redirect is relative, never built from the Host header, so they also hold behind a proxy that
mounts the service under a prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
BEARER = "bearer"
# Operations anyone may call, whatever the auth setting.
_OPEN_PATHS = ("/healthz", "/readyz")


def install(app: FastAPI) -> None:
    """Mount `/ui/`, redirect `/` to it, serve `/docs` and `/redoc` from vendored assets."""

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("ui/", status_code=307)

    @app.get("/ui", include_in_schema=False)
    async def ui_without_slash() -> RedirectResponse:
        # Relative to /ui this resolves to /ui/ (Starlette's own slash redirect uses the Host).
        return RedirectResponse("ui/", status_code=307)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} · API (Swagger UI)",
            swagger_js_url="ui/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="ui/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="ui/favicon.svg",
            # No badge fetched from the online validator; keys stay in this page only.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="openapi.json",
            title=f"{app.title} · API (ReDoc)",
            redoc_js_url="ui/vendor/redoc/redoc.standalone.js",
            redoc_favicon_url="ui/favicon.svg",
            with_google_fonts=False,
        )

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")


def declare_bearer(schema: dict[str, Any]) -> None:
    """Declare the API keys as an HTTP bearer scheme required by default, so Swagger UI's
    "Authorize" and "Try it out" send `Authorization: Bearer <key>`."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from RELBANK_API_KEYS_FILE (none needed when "
        "RELBANK_AUTH=disabled).",
    }
    schema["security"] = [{BEARER: []}]
    for path in _OPEN_PATHS:
        for operation in schema.get("paths", {}).get(path, {}).values():
            operation["security"] = []
