"""``create_app(settings)``: the FastAPI application. Nothing connects until start-up.

Middleware, outermost first: request id (every response gets ``X-Request-ID``), metrics
(sees the final status, including 413/500/503), the error catch-all (500/503 without
details), the body size limit (413), then FastAPI's own exception handlers and routes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.body_limit import BodyLimitMiddleware
from api.docs import install_docs
from api.errors import ErrorMiddleware, install_error_handlers
from api.feed_cache import FeedCache
from api.feed_fast import FeedFastPath
from api.feed_pages import FeedPages
from api.feed_query import FeedReader
from api.idempotency_retention import run_retention
from api.metrics import ApiMetrics, MetricsMiddleware
from api.request_id import RequestIdMiddleware
from api.routes import asyncapi, feed, health, questions
from api.token_cache import TokenCache
from outbox import tracing
from outbox.db import libpq_dsn, make_async_engine
from outbox.runtime import freeze_startup_objects
from outbox.settings import Settings

APPLICATION_NAME = "qa-api"
# Bounded waits: a saturated pool or a hung statement becomes a 503, not a hung client.
POOL_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000


def _engine(url: SecretStr) -> AsyncEngine:
    return make_async_engine(
        url,
        application_name=APPLICATION_NAME,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        pool_size=10,
        max_overflow=10,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # No ping per checkout (a round trip per request): after a database restart the
        # first statement on a stale connection fails as a 503 and the pool is renewed.
        pre_ping=False,
        pool_recycle=1800,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = _engine(settings.database_url)
    same = settings.feed_url.get_secret_value() == settings.database_url.get_secret_value()
    feed_engine = engine if same else _engine(settings.feed_url)
    app.state.engines = {"database": engine} if same else {"database": engine, "feed": feed_engine}
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.feed_sessions = async_sessionmaker(feed_engine, expire_on_commit=False)
    reader = FeedReader(
        libpq_dsn(settings.feed_url),
        size=settings.api_feed_pool_size,
        timeout=POOL_TIMEOUT_SECONDS,
        statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        application_name=APPLICATION_NAME,
    )
    await reader.open()
    cache = FeedCache(settings.api_feed_cache_seconds, settings.api_feed_cache_entries)
    app.state.feed = FeedPages(reader, cache)
    retention = None
    if settings.api_idempotency_retention_seconds > 0:
        retention = asyncio.create_task(
            run_retention(engine, settings.api_idempotency_retention_seconds, every=300.0),
            name="idempotency-retention",
        )
    freeze_startup_objects()
    try:
        yield
    finally:
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        await reader.close()
        for each in app.state.engines.values():
            await each.dispose()


def create_app(settings: Settings) -> FastAPI:
    """Build the API for ``settings``. Engines are created by the app's lifespan."""
    app = FastAPI(
        title="Q&A service",
        version="1",
        description="Questions and answers with a transactional outbox, and the question feed.",
        lifespan=_lifespan,
        docs_url=None,  # served by api/docs.py with assets from the package
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics = ApiMetrics()
    app.state.token_cache = TokenCache(settings.api_token_cache_seconds)
    install_error_handlers(app)
    app.include_router(questions.router)
    app.include_router(feed.router)
    app.include_router(health.router)
    app.include_router(asyncapi.router)
    install_docs(app)
    # add_middleware prepends: the last added is the outermost.
    if settings.api_feed_fast_path:
        # Innermost: every middleware below (request id, metrics, errors) still applies.
        app.add_middleware(
            FeedFastPath, max_limit=settings.api_feed_max_limit, route=feed.FEED_ROUTE
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(ErrorMiddleware)
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        routes=app.router.routes,
        access_log=settings.api_access_log,
    )
    app.add_middleware(RequestIdMiddleware)
    provider = tracing.provider()
    if provider is not None:
        # Outermost: the server span continues an incoming W3C traceparent and is current
        # while the request runs (so log lines and the event's create span see it).
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls="/metrics,/healthz,/readyz"
        )
    return app
