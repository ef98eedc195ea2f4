"""``qa-console`` (also ``qa-ops console``): serve the operators' console until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError
from sqlalchemy import text

from console.app import APPLICATION_NAME, create_app
from outbox import tracing
from outbox.db import make_async_engine
from outbox.errors import StartupError
from outbox.runtime import connect_with_retry, setup_logging
from outbox.settings import Settings, redact

log = logging.getLogger("qa.console")
_stopped: list[str] = []


async def _ping(settings: Settings) -> None:
    engine = make_async_engine(settings.database_url, application_name=APPLICATION_NAME)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def _stop_noted(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal it stopped on; note it once (see api/main.py).
    if not _stopped:
        _stopped.append(signal.Signals(signum).name)


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in exc.errors())
        print(f"qa-console: cannot start: invalid configuration ({fields})", file=sys.stderr)
        sys.exit(1)
    setup_logging(settings.log_level, settings.log_format)
    tracing.setup("qa-console")  # replays from the console record their span (off by default)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per overview refresh
    try:
        asyncio.run(
            connect_with_retry(
                f"database {redact(settings.database_url)}",
                lambda: _ping(settings),
                settings.startup_timeout_seconds,
            )
        )
    except StartupError as exc:
        print(f"qa-console: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("qa-console serving on http://%s:%d", settings.console_host, settings.console_port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_noted)
    uvicorn.run(
        create_app(settings),
        host=settings.console_host,
        port=settings.console_port,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    log.info("qa-console stopped%s", f" after {_stopped[0]}" if _stopped else "")


if __name__ == "__main__":
    main()
