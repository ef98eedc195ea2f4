"""Start-up retries give up with a one-line StartupError after their budget."""

from __future__ import annotations

import pytest

from outbox.errors import StartupError
from outbox.runtime import connect_with_retry


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
