"""``create_app(settings)``: the operators' console (FastAPI, Jinja2 pages, vendored htmx).

Nothing connects until start-up. Database work is synchronous SQLAlchemy in the thread
pool (the same store functions ``qa-ops`` uses); the broker's figures come from the
management HTTP API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from console import deadletters, events, login, overview
from console.sessions import SessionStore
from console.web import HERE, ConsoleError, on_console_error, page
from outbox.db import make_engine
from outbox.settings import Settings

APPLICATION_NAME = "qa-console"
log = logging.getLogger("qa.console")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # htmx is served from here; no inline scripts, no third party.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " frame-ancestors 'none'; form-action 'self'"
    ),
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    args = {"connect_args": {"application_name": APPLICATION_NAME, "connect_timeout": 5}}
    app.state.engine = engine = make_engine(settings.database_url, pool_size=4, **args)
    same = settings.feed_url.get_secret_value() == settings.database_url.get_secret_value()
    app.state.feed_engine = engine if same else make_engine(settings.feed_url, **args)
    app.state.http = httpx.AsyncClient()
    try:
        yield
    finally:
        await app.state.http.aclose()
        engine.dispose()
        if not same:
            app.state.feed_engine.dispose()


async def _on_http_error(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "Error")
    message = "Actions are forms (POST)." if exc.status_code == 405 else str(exc.detail)
    return page(request, "error.html", exc.status_code, title=title, message=message)


async def _on_validation(request: Request, exc: Exception) -> HTMLResponse:
    return page(
        request, "error.html", 422, title="Bad request", message="A parameter is missing or bad."
    )


async def _on_database_error(request: Request, exc: Exception) -> HTMLResponse:
    log.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
    response = page(
        request,
        "error.html",
        503,
        title="Database unavailable",
        message="The console cannot reach its database right now; try again shortly.",
    )
    response.headers["Retry-After"] = "5"
    return response


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="qa console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan
    )
    app.state.settings = settings
    app.state.sessions = SessionStore(settings.console_session_hours * 3600)
    app.add_exception_handler(ConsoleError, on_console_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(sa_exc.OperationalError, _on_database_error)
    app.add_exception_handler(sa_exc.TimeoutError, _on_database_error)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (login, overview, deadletters, events):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app
