"""``qa-api``: check the databases, then serve the API with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from functools import partial
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import text

from api.app import APPLICATION_NAME, create_app
from outbox import tracing
from outbox.db import make_async_engine
from outbox.errors import StartupError
from outbox.runtime import connect_with_retry, setup_logging
from outbox.settings import Settings, redact

log = logging.getLogger("qa.api")
GRACEFUL_SHUTDOWN_SECONDS = 10
WORKER_HEALTHCHECK_SECONDS = 30


async def _ping(url: SecretStr) -> None:
    engine = make_async_engine(url, application_name=APPLICATION_NAME)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _check_databases(settings: Settings) -> None:
    urls = {"database": settings.database_url, "feed database": settings.feed_url}
    if settings.feed_url.get_secret_value() == settings.database_url.get_secret_value():
        urls.pop("feed database")
    for what, url in urls.items():
        await connect_with_retry(
            f"{what} {redact(url)}", partial(_ping, url), settings.startup_timeout_seconds
        )


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # Field names and messages only: the rejected values may be secrets.
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in exc.errors())
        print(f"qa-api: cannot start: invalid configuration ({fields})", file=sys.stderr)
        sys.exit(1)


_stop_logged: list[str] = []


def _already_handled(signum: int, frame: FrameType | None) -> None:
    # One line per stop, whichever signals arrive (a terminal's SIGINT to the whole
    # process group and a supervisor's SIGTERM may both come).
    if not _stop_logged:
        _stop_logged.append(signal.Signals(signum).name)
        log.info("qa-api stopped after %s", _stop_logged[0])


def main() -> None:
    """Entry point of the ``qa-api`` console script."""
    settings = _load_settings()
    setup_logging(settings.log_level, settings.log_format)
    tracing.setup("qa-api")
    tracing.instrument_psycopg()
    try:
        asyncio.run(_check_databases(settings))
    except StartupError as exc:
        print(f"qa-api: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info(
        "qa-api serving on http://%s:%d (database %s)",
        settings.api_host,
        settings.api_port,
        redact(settings.database_url),
    )
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, finish in-flight requests),
    # then restores the previous handlers and re-raises the signal. Installing no-op
    # handlers first makes that re-raise harmless, so a clean stop exits 0 like the
    # other commands instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _already_handled)
    workers = settings.api_workers or os.cpu_count() or 1
    common: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "loop": "uvloop" if settings.event_loop == "uvloop" else "asyncio",
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        # uvicorn's supervisor binds the socket once and forks the workers; each builds
        # its own app (engines, caches) from the same environment. SIGTERM stops them all.
        log.info("qa-api starting %d worker processes", workers)
        uvicorn.run(
            "api.main:app_from_environment",
            factory=True,
            workers=workers,
            # A worker importing the app on a busy machine can take seconds; the default
            # 5 s made the supervisor kill and respawn workers that were only starting.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **common,
        )


def app_from_environment() -> FastAPI:
    """The app of one worker process (``QA_API_WORKERS`` > 1)."""
    settings = _load_settings()
    setup_logging(settings.log_level)
    return create_app(settings)


if __name__ == "__main__":
    main()
