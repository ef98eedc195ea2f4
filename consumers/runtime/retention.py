"""Inbox retention: each subscriber deletes its inbox rows older than the window.

Runs beside the consumer loop in every subscriber process: every ``interval`` seconds,
batches of at most ``batch`` rows older than ``QA_INBOX_RETENTION_SECONDS`` are deleted,
one short transaction each, until none is left. A failing database is logged and tried
again at the next interval; it never stops the subscriber. ``retention_seconds == 0``
keeps rows forever.

What the window guarantees: a redelivery of an event arriving within the window after
it was applied is recognised and changes nothing. The default (7 days) is far longer
than every way a copy can come back: the retry tiers (about 13 minutes in total by
default), the relay re-publishing an unconfirmed row, a broker redelivery after a crash.
A copy arriving later (a dead letter replayed weeks after the original was applied)
would be applied again.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.runtime import inbox, metrics
from outbox import tracing

log = logging.getLogger("qa.consumer.retention")


async def purge_expired(
    engine: AsyncEngine, subscriber: str, retention_seconds: float, batch: int
) -> int:
    """Delete every inbox row of ``subscriber`` past the window, ``batch`` at a time."""
    total = 0
    while True:
        deleted = await inbox.purge(engine, subscriber, retention_seconds, batch)
        total += deleted
        metrics.INBOX_DELETED.labels(subscriber).inc(deleted)
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let the consumer loop in between batches


async def retention_loop(
    engine: AsyncEngine,
    subscriber: str,
    retention_seconds: float,
    batch: int,
    interval: float,
) -> None:
    """Purge now and then every ``interval`` seconds until cancelled."""
    if retention_seconds <= 0:
        return
    while True:
        try:
            with tracing.untraced():  # housekeeping: no trace of its own per run
                deleted = await purge_expired(engine, subscriber, retention_seconds, batch)
            if deleted:
                log.info("%s: deleted %d inbox rows past retention", subscriber, deleted)
        except Exception as exc:
            log.warning(
                "%s: inbox retention failed (%r); next try in %gs", subscriber, exc, interval
            )
        await asyncio.sleep(interval)
