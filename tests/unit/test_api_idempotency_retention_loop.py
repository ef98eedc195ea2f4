"""The idempotency-key purge loop survives a failing database and keeps purging."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api import idempotency_retention


async def test_a_failed_purge_is_logged_and_retried_next_round(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    done = asyncio.Event()

    async def flaky_purge(engine: Any, retention_seconds: float, batch: int = 5000) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("database restarting")
        done.set()
        return 3

    monkeypatch.setattr(idempotency_retention, "purge_expired", flaky_purge)
    task = asyncio.create_task(idempotency_retention.run_retention(None, 60, every=0.01))  # type: ignore[arg-type]
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls >= 2
    assert "purge failed (ConnectionRefusedError)" in caplog.text
