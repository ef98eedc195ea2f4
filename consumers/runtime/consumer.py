"""The subscriber loop: collect a batch, route it, apply it, divert failures, ack after commit.

Per batch:

1. route every message (decode, find the handler for its type and version); what
   cannot be routed is marked for the dead-letter queue (permanent, first delivery);
2. apply the projection events in ONE transaction with their inbox rows, then perform
   the side-effect events (each recorded in the inbox right after it succeeded);
3. publish a retry or dead-letter copy of every failed message, with confirms;
4. ack: only after the commit (guarantee 5) and, for a failed message, only after its
   copy was confirmed. A copy that could not be published is requeued, never acked.

Any exception escaping subscriber code fails its message(s), classified like every other
failure; only ``CancelledError`` (a stop) leaves the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.runtime import metrics
from consumers.runtime.effects import EffectPerformer
from consumers.runtime.item import Item, route
from consumers.runtime.projections import ProjectionApplier
from consumers.runtime.settle import Blocked, Policy, Settler, is_stale
from consumers.runtime.spans import BatchSpans
from outbox import logs, tracing
from outbox.runtime import cancel_requests, stop_if_cancel_swallowed
from outbox.subscribers import Projection, SideEffect, Subscriber

log = logging.getLogger("qa.consumer")

OnDelivery = Callable[[AbstractIncomingMessage], None]


class SubscriberConsumer:
    """Consumes ``<name>.events`` for one subscriber."""

    def __init__(
        self,
        subscriber: Subscriber,
        engine: AsyncEngine,
        queue: AbstractQueue,
        publisher: AbstractChannel,
        policy: Policy,
        *,
        batch_size: int,
        batch_wait_ms: int,
        resources: Any = None,
        on_delivery: OnDelivery | None = None,
        publisher_blocked: Blocked | None = None,
    ) -> None:
        self._subscriber = subscriber
        self._name = subscriber.name
        self._queue = queue
        self._batch_size = batch_size
        self._batch_wait = batch_wait_ms / 1000
        self._projections = ProjectionApplier(subscriber.name, engine)
        concurrency = subscriber.tuning.effect_concurrency
        self._effects = EffectPerformer(subscriber.name, engine, resources, concurrency)
        self._settler = Settler(subscriber.name, publisher, policy, publisher_blocked)
        self._on_delivery = on_delivery
        self._buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag: str | None = None

    async def start(self) -> None:
        """Start receiving (the robust queue re-subscribes by itself after a reconnect)."""
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop receiving; unsettled messages go back to the queue when the channel closes."""
        await self._settler.close()
        if self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            try:
                await self._queue.cancel(tag)
            except Exception as exc:  # the channel may already be gone; nothing to lose
                log.debug("cancel of consumer %s failed: %s", tag, exc)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        metrics.RECEIVED.labels(self._name).inc()
        if self._on_delivery is not None:
            self._on_delivery(message)
        self._buffer.put_nowait(message)

    async def run(self) -> None:
        """Process batches until cancelled."""
        while True:
            before = cancel_requests()
            batch = await self._next_batch()
            await self.handle_batch(batch)
            # A stop swallowed anywhere in the batch (a 3.11 timeout, a driver that turned
            # the cancellation into an error it then handled) must still end the loop.
            stop_if_cancel_swallowed(before)

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        batch = [await self._buffer.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_wait
        while len(batch) < self._batch_size:
            if not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the get completes (the process would not stop);
            # asyncio.timeout can too, rarely, hence the check after it.
            before = cancel_requests()
            try:
                async with asyncio.timeout(remaining):
                    item = await self._buffer.get()
            except TimeoutError:
                stop_if_cancel_swallowed(before)
                break
            stop_if_cancel_swallowed(before)
            batch.append(item)
        return batch

    async def handle_batch(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """Apply, divert and settle one batch."""
        started = time.perf_counter()
        # A message from a channel that closed since can no longer be acked; the broker
        # redelivers it on the new channel, so working on it now would be wasted.
        items = [route(self._subscriber, m) for m in batch if not is_stale(m)]
        # Log lines of the batch carry the subscriber; one context-variable set per batch.
        token = logs.bind_values(subscriber=self._name)
        try:
            if tracing.enabled():  # the only cost while tracing is off
                await self._handle_traced(items)
            else:
                await self._handle(items)
        finally:
            logs.unbind(token)
        metrics.BATCH_SIZE.labels(self._name).observe(len(batch))
        metrics.BATCH_SECONDS.labels(self._name).observe(time.perf_counter() - started)

    async def _handle(self, items: list[Item]) -> None:
        await self._apply(items)
        self._count(items)
        await self._settler.settle(items)

    async def _handle_traced(self, items: list[Item]) -> None:
        spans = BatchSpans(self._name, self._queue.name, items)
        try:
            with trace.use_span(spans.batch, end_on_exit=False):
                await self._handle(items)
        finally:
            spans.finish()

    async def _apply(self, items: list[Item]) -> None:
        projected = [i for i in items if i.error is None and isinstance(i.handler, Projection)]
        effects = [i for i in items if i.error is None and isinstance(i.handler, SideEffect)]
        # Projections first: a side effect may read what this batch just projected.
        for step, group in ((self._projections.apply, projected), (self._effects.perform, effects)):
            if not group:
                continue
            try:
                await step(group)
            except Exception as exc:  # a runtime bug must not end the process either
                log.exception("%s: applying %d message(s) failed", self._name, len(group))
                for item in group:
                    if item.applied is None:
                        item.error = item.error or exc
        for item in items:  # never ack a message nothing happened to
            if item.error is None and item.applied is None:
                item.error = RuntimeError("message was neither applied nor failed")

    def _count(self, items: list[Item]) -> None:
        now = datetime.now(UTC)
        applied: Counter[str] = Counter()
        duplicates = 0
        for item in items:
            if item.error is not None or item.event is None:
                continue
            if item.applied:
                applied[item.event.envelope.type] += 1
                latency = (now - item.event.envelope.occurred_at).total_seconds()
                metrics.COMMIT_TO_APPLIED.labels(self._name).observe(max(latency, 0.0))
            elif item.applied is False:
                duplicates += 1
        for event_type, count in applied.items():
            metrics.APPLIED.labels(self._name, event_type).inc(count)
        if duplicates:
            metrics.DUPLICATES.labels(self._name).inc(duplicates)
