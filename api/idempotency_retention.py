"""Forget ``Idempotency-Key`` results after a retention period, in bounded batches.

Clients retry within seconds or minutes; keeping every key forever only grows the table.
Each API process runs this loop; concurrent runs are harmless (each deletes a bounded
batch of already-expired rows). A failure is logged and retried on the next round, it
never affects requests.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("qa.api")

PURGE_SQL = text(
    """
    DELETE FROM qa.idempotency_keys
    WHERE (user_name, key) IN (
        SELECT user_name, key FROM qa.idempotency_keys
        WHERE created_at < now() - make_interval(secs => :retention)
        LIMIT :batch
    )
    """
)


async def purge_expired(engine: AsyncEngine, retention_seconds: float, batch: int = 5000) -> int:
    """Delete keys older than ``retention_seconds``; returns how many were deleted."""
    deleted = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(PURGE_SQL, {"retention": retention_seconds, "batch": batch})
        deleted += result.rowcount
        if result.rowcount < batch:
            return deleted


async def run_retention(engine: AsyncEngine, retention_seconds: float, every: float) -> None:
    """Purge expired keys every ``every`` seconds until cancelled."""
    while True:
        try:
            deleted = await purge_expired(engine, retention_seconds)
            if deleted:
                log.info("idempotency keys: %d expired keys deleted", deleted)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be away; try again next round
            log.warning("idempotency keys: purge failed (%s)", type(exc).__name__)
        await asyncio.sleep(every)
