"""Start-up retries give up with a one-line StartupError after their budget."""

from __future__ import annotations

import asyncio
import logging

import aiormq.exceptions
import psycopg
import pytest

from outbox.errors import StartupError
from outbox.runtime import connect_with_retry, run
from outbox.startup_errors import permanent_reason


async def test_lambda_returning_awaitable_is_retried_until_it_succeeds() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("not yet")
        return "up"

    assert await connect_with_retry("thing", lambda: flaky(), budget_seconds=10) == "up"
    assert calls == 3


async def test_budget_exhausted_raises_startup_error_with_reason() -> None:
    async def down() -> None:
        raise ConnectionRefusedError("refused\nsecond line")

    with pytest.raises(StartupError) as info:
        await connect_with_retry("database", down, budget_seconds=0.3)
    assert "database unreachable" in str(info.value)
    assert "\n" not in str(info.value)


async def test_each_transient_failure_logs_one_readable_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5999)")
        return "up"

    caplog.set_level(logging.WARNING, logger="qa")
    assert await connect_with_retry("broker amqp://127.0.0.1:5999/", flaky, 10) == "up"
    lines = [r.getMessage() for r in caplog.records if r.name == "qa"]
    assert len(lines) == 2
    assert lines[0].startswith("broker amqp://127.0.0.1:5999/ not reachable yet (attempt 1: ")
    assert "ConnectionRefusedError" in lines[0] and "retrying in" in lines[0]
    assert all("<function" not in line and "Retrying" not in line for line in lines)


async def test_a_permanent_failure_ends_the_start_at_once() -> None:
    calls = 0

    async def no_such_database() -> None:
        nonlocal calls
        calls += 1
        raise psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed:'
            ' FATAL:  database "qa_nope" does not exist'
        )

    with pytest.raises(StartupError) as info:
        await connect_with_retry("database postgresql://x/qa_nope", no_such_database, 3600)
    assert calls == 1
    assert str(info.value) == 'database postgresql://x/qa_nope: database "qa_nope" does not exist'


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            psycopg.OperationalError('failed: FATAL:  role "bob" does not exist'),
            'role "bob" does not exist',
        ),
        (
            psycopg.OperationalError('FATAL:  password authentication failed for user "qa"'),
            'password authentication failed for user "qa"',
        ),
        (
            aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused"),
            "access refused: wrong user name or password",
        ),
        (
            aiormq.exceptions.InvalidFrameError(
                "Expected one of ['Connection.OpenOk'], got <Connection.Close object at 0x1>"
            ),
            "the broker refused the virtual host: it does not exist or the user may not use it",
        ),
    ],
)
def test_permanent_reasons(exc: BaseException, reason: str) -> None:
    assert permanent_reason(exc) == reason


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("FATAL:  the database system is starting up"),
        psycopg.OperationalError("connection failed: Connection refused"),
        ConnectionRefusedError(111, "refused"),
        aiormq.exceptions.AMQPConnectionError(111, "Connect call failed"),
        TimeoutError(),
    ],
)
def test_transient_failures_are_not_permanent(exc: BaseException) -> None:
    assert permanent_reason(exc) is None


@pytest.mark.parametrize(
    ("event_loop", "loop_module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_run_uses_the_configured_event_loop(event_loop: str, loop_module: str) -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    assert run(main, "test", event_loop) == 0
    assert seen == [loop_module]
