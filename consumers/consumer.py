"""The feed consumer loop: collect a batch, apply it in one transaction, divert failures,
ack after commit.

Per batch:

1. decode every message; a permanent failure is marked for the dead-letter queue;
2. apply the decoded events with ONE statement in ONE transaction (quick in-process
   retries on transient errors). If that statement fails for a non-transient reason, the
   batch is applied again with a SAVEPOINT per event, so one bad event fails alone;
3. publish a retry or dead-letter copy of every failed message, with confirms;
4. ack: only after the commit (guarantee 5) and, for a failed message, only after its
   copy was confirmed. A copy that could not be published is requeued, never acked.

Acks go out as one ``multiple`` ack per channel when the whole batch is settled: every
earlier delivery tag on the channel belongs to this batch or an earlier, settled one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from consumers import metrics
from consumers.disposition import is_transient
from consumers.feed import ACCEPTS, FeedChange, apply_changes, change_of, unique_changes
from consumers.settle import Settler, is_stale
from outbox.errors import PermanentMessageError
from outbox.settings import Settings
from outbox.versions import decode_for

log = logging.getLogger("qa.consumer.feed")

OnDelivery = Callable[[AbstractIncomingMessage], None]
Applied = tuple[set[uuid.UUID], dict[uuid.UUID, Exception]]

# Quick in-process retries of a batch on transient errors: a blip (a deadlock, a
# reconnect) passes without a trip through the broker's retry tiers.
QUICK_ATTEMPTS = 3


@dataclass
class Item:
    """One delivered message on its way through a batch."""

    message: AbstractIncomingMessage
    change: FeedChange | None = None
    error: Exception | None = None


class FeedConsumer:
    """Consumes ``feed.events`` and keeps ``feed.questions`` up to date."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        queue: AbstractQueue,
        publisher: AbstractChannel,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._queue = queue
        self._settler = Settler(settings, publisher)
        self._on_delivery = on_delivery
        self._buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag: str | None = None

    async def start(self) -> None:
        """Start receiving (the robust queue re-subscribes by itself after a reconnect)."""
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop receiving; unsettled messages go back to the queue when the channel closes."""
        if self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            try:
                await self._queue.cancel(tag)
            except Exception as exc:  # the channel may already be gone; nothing to lose
                log.debug("cancel of consumer %s failed: %s", tag, exc)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        metrics.RECEIVED.inc()
        if self._on_delivery is not None:
            self._on_delivery(message)
        self._buffer.put_nowait(message)

    async def run(self) -> None:
        """Process batches until cancelled."""
        while True:
            batch = await self._next_batch()
            await self.handle_batch(batch)

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        batch = [await self._buffer.get()]
        size = self._settings.consumer_batch_size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.consumer_batch_wait_ms / 1000
        while len(batch) < size:
            if not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._buffer.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def handle_batch(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """Apply, divert and settle one batch."""
        started = time.perf_counter()
        # A message from a channel that closed since can no longer be acked; the broker
        # redelivers it on the new channel, so working on it now would be wasted.
        items = [self._decode(m) for m in batch if not is_stale(m)]
        valid = [item for item in items if item.change is not None]
        if valid:
            await self._apply(valid)
        await self._settler.settle(items)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    @staticmethod
    def _decode(message: AbstractIncomingMessage) -> Item:
        try:
            return Item(message, change=change_of(decode_for(message.body, ACCEPTS)))
        except PermanentMessageError as exc:
            return Item(message, error=exc)

    async def _apply(self, items: list[Item]) -> None:
        changes = [item.change for item in items if item.change is not None]
        try:
            fresh, failed = await self._apply_with_quick_retries(changes)
        except Exception as exc:  # transient past the quick retries: the whole batch waits
            for item in items:
                item.error = exc
            return
        committed = datetime.now(UTC)
        applied: Counter[str] = Counter()
        duplicates = 0
        for item in items:
            change = item.change
            assert change is not None
            if change.event_id in failed:
                item.error = failed[change.event_id]
            elif change.event_id in fresh:
                fresh.discard(change.event_id)  # a second copy in this batch is a duplicate
                applied[change.event_type] += 1
                latency = (committed - change.occurred_at).total_seconds()
                metrics.COMMIT_TO_APPLIED.observe(max(latency, 0.0))
            else:
                duplicates += 1
        for event_type, count in applied.items():
            metrics.APPLIED.labels(event_type).inc(count)
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)

    async def _apply_with_quick_retries(self, changes: list[FeedChange]) -> Applied:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(QUICK_ATTEMPTS),
            wait=wait_exponential_jitter(multiplier=0.02, max=0.1, jitter=0.03),
            retry=retry_if_exception(is_transient),
            before_sleep=_count_and_log,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._apply_once(changes)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _apply_once(self, changes: list[FeedChange]) -> Applied:
        unique = unique_changes(changes)
        try:
            async with self._engine.begin() as conn:
                return await apply_changes(conn, unique), {}
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(unique) == 1:
                return set(), {unique[0].event_id: exc}
            log.warning("batch of %d failed (%s); isolating each event", len(unique), exc)
        return await self._apply_isolated(unique)

    async def _apply_isolated(self, changes: list[FeedChange]) -> Applied:
        fresh: set[uuid.UUID] = set()
        failed: dict[uuid.UUID, Exception] = {}
        async with self._engine.begin() as conn:
            for change in changes:
                try:
                    async with conn.begin_nested():
                        fresh |= await apply_changes(conn, [change])
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    failed[change.event_id] = exc
        return fresh, failed


_before_sleep = before_sleep_log(log, logging.WARNING)


def _count_and_log(retry_state: object) -> None:
    metrics.QUICK_RETRIES.inc()
    _before_sleep(retry_state)  # type: ignore[arg-type]
