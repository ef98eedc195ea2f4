"""Process plumbing shared by the long-running commands: logging, start-up retries, signals.

A command calls :func:`run` with its main coroutine. SIGTERM/SIGINT cancel the main task
(which abandons or finishes its in-flight batch without losing anything: nothing is
acked or marked published before it is safe). A :class:`StartupError` ends the process
with exit code 1 and a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from outbox import logs
from outbox.errors import StartupError

T = TypeVar("T")
log = logging.getLogger("qa")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging on stderr, ``text`` or ``json`` (see :mod:`outbox.logs`)."""
    logs.setup_logging(level, fmt)


async def connect_with_retry(
    what: str,
    connect: Callable[[], Awaitable[T]],
    budget_seconds: float,
    retry_on: tuple[type[BaseException], ...] = (OSError, ConnectionError, Exception),
) -> T:
    """Call ``connect`` until it succeeds or ``budget_seconds`` pass, then StartupError."""
    retrying = AsyncRetrying(
        stop=stop_after_delay(budget_seconds),
        wait=wait_exponential_jitter(multiplier=0.2, max=3.0, jitter=0.2),
        retry=retry_if_exception_type(retry_on),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=False,
    )

    async def attempt() -> T:
        # Awaiting here (not handing ``connect`` to tenacity) makes lambdas and
        # functools.partial objects that return awaitables retry as well.
        return await connect()

    try:
        return await retrying(attempt)
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        reason = f"{type(cause).__name__}: {cause}".splitlines()[0] if cause else "unknown"
        raise StartupError(f"{what} unreachable after {budget_seconds:g}s ({reason})") from cause


def run(main: Callable[[], Coroutine[Any, Any, None]], name: str) -> int:
    """Run ``main`` until it returns or a stop signal arrives. Returns the exit code."""

    async def _runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(main(), name=name)
        stopping = False

        def _stop(signame: str) -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                log.info("%s: %s received, stopping", name, signame)
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop, sig.name)
        try:
            await task
        except asyncio.CancelledError:
            if not stopping:
                raise
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
        return 0

    try:
        return asyncio.run(_runner())
    except StartupError as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        return 1
