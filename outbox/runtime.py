"""Process plumbing shared by the long-running commands: logging, start-up retries, signals.

A command calls :func:`run` with its main coroutine. SIGTERM/SIGINT cancel the main task
(which abandons or finishes its in-flight batch without losing anything: nothing is
acked or marked published before it is safe). A :class:`StartupError` ends the process
with exit code 1 and a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from outbox import logs
from outbox.errors import StartupError
from outbox.startup_errors import describe, permanent_reason

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
    """Call ``connect`` until it succeeds or ``budget_seconds`` pass, then StartupError.

    ``what`` names the service and its (redacted) address. A permanent failure (see
    :mod:`outbox.startup_errors`) ends the start at once; each transient one logs one line
    naming what is retried, why, and when the next attempt comes.
    """

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, retry_on) and permanent_reason(exc) is None

    def announce(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        left = max(budget_seconds - (state.seconds_since_start or 0.0), 0.0)
        log.warning(
            "%s not reachable yet (attempt %d: %s); retrying in %.1fs, giving up in %.0fs",
            what,
            state.attempt_number,
            describe(exc) if exc else "unknown",
            wait,
            left,
        )

    retrying = AsyncRetrying(
        stop=stop_after_delay(budget_seconds),
        wait=wait_exponential_jitter(multiplier=0.2, max=3.0, jitter=0.2),
        retry=retry_if_exception(transient),
        before_sleep=announce,
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
        reason = describe(cause) if cause else "unknown"
        raise StartupError(f"{what} unreachable after {budget_seconds:g}s ({reason})") from cause
    except Exception as exc:
        refused = permanent_reason(exc)
        if refused is None:
            raise
        raise StartupError(f"{what}: {refused}") from exc


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, classes, the app) out of the garbage
    collector's sight (``gc.freeze``), so that full collections while serving scan only
    what was made since. Measured on the API under the feed benchmark: full collections
    that otherwise stalled every in-flight request for 80-90 ms each took ~4 ms, and the
    feed's p99 fell with them (docs/BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


def loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``QA_EVENT_LOOP`` (None: asyncio's default loop)."""
    if event_loop == "uvloop":
        import uvloop  # imported here: only the commands that run a loop need it

        return uvloop.new_event_loop
    return None


def run(
    main: Callable[[], Coroutine[Any, Any, None]], name: str, event_loop: str = "asyncio"
) -> int:
    """Run ``main`` on ``event_loop`` until it returns or a stop signal arrives. Returns
    the exit code."""

    async def _runner() -> int:
        loop = asyncio.get_running_loop()
        freeze_startup_objects()
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
        with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
            return runner.run(_runner())
    except StartupError as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        return 1


def cancel_requests() -> int:
    """How many cancellations of the current task are pending (``Task.cancelling()``)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def stop_if_cancel_swallowed(before: int) -> None:
    """Raise ``CancelledError`` when a cancellation arrived since ``before`` (a
    :func:`cancel_requests` reading) and was swallowed instead of raised.

    On Python 3.11 an ``asyncio.timeout`` block can end normally or with ``TimeoutError``
    although the task was cancelled while it waited (seen when the stop coincides with
    the deadline or with the awaited result): the loop around it then runs on and the
    process never stops. Loops that only a stop may end call this after each such
    wait, with the reading taken before it; the count is compared per iteration, never
    against zero, because a 3.11 ``TaskGroup`` can leave it raised after a term ends.
    """
    if cancel_requests() > before:
        raise asyncio.CancelledError()
