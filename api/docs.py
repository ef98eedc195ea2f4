"""``/docs`` (Swagger UI) and ``/redoc`` served with assets from the package: no CDN, no
web fonts, so both work offline. Versions and licences: ``api/static/README.md``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "/docs-assets"
SWAGGER_JS = f"{ASSETS}/swagger-ui-bundle-5.35.0.js"
SWAGGER_CSS = f"{ASSETS}/swagger-ui-5.35.0.css"
REDOC_JS = f"{ASSETS}/redoc-2.5.4.standalone.js"
FAVICON = f"{ASSETS}/favicon-32x32.png"


def install_docs(app: FastAPI) -> None:
    """Add the two documentation pages and their assets (create the app with
    ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            # No call to the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
