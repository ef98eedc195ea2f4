"""Applying the projection events of a batch: ONE transaction with their inbox rows.

The inbox insert decides which events are new; only those reach the subscriber's
``Projection.apply`` (grouped per handler, in one transaction). Transient errors get a
few quick in-process retries. Any other failure of the batch transaction (a constraint,
a bug in subscriber code) makes the runtime apply the batch again with a SAVEPOINT per
event, so that one bad event fails alone and the others commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from consumers.runtime import inbox, metrics
from consumers.runtime.item import Item, logged
from outbox.events import DecodedEvent
from outbox.subscribers import Projection
from outbox.transient import is_transient

log = logging.getLogger("qa.consumer")

# Quick in-process retries of a batch on transient errors: a blip (a deadlock, a
# reconnect) passes without a trip through the broker's retry tiers.
QUICK_ATTEMPTS = 3
Outcome = tuple[set[uuid.UUID], dict[uuid.UUID, Exception]]


class ProjectionApplier:
    """Applies projection items of one subscriber to its database."""

    def __init__(self, subscriber: str, engine: AsyncEngine) -> None:
        self._subscriber = subscriber
        self._engine = engine

    async def apply(self, items: Sequence[Item]) -> None:
        """Set ``applied`` (or ``error``) on every item."""
        try:
            fresh, failed = await self._with_quick_retries(items)
        except Exception as exc:  # transient past the quick retries: the whole batch waits
            for item in items:
                item.error = exc
            return
        for item in items:
            assert item.event is not None
            event_id = item.event.envelope.id
            if event_id in failed:
                item.error = failed[event_id]
            elif event_id in fresh:
                fresh.discard(event_id)  # a second copy in this batch is a duplicate
                item.applied = True
            else:
                item.applied = False

    async def _with_quick_retries(self, items: Sequence[Item]) -> Outcome:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(QUICK_ATTEMPTS),
            wait=wait_exponential_jitter(multiplier=0.02, max=0.1, jitter=0.03),
            retry=retry_if_exception(is_transient),
            before_sleep=self._count_and_log,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._apply_once(items)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _apply_once(self, items: Sequence[Item]) -> Outcome:
        try:
            async with self._engine.begin() as conn:
                return await self._apply_in(conn, items), {}
        except Exception as exc:
            if is_transient(exc):
                raise
            if len({id(i.event) for i in items}) == 1:
                assert items[0].event is not None
                return set(), {items[0].event.envelope.id: exc}
            log.warning(
                "%s: batch of %d failed (%r); isolating each event",
                self._subscriber,
                len(items),
                exc,
            )
        return await self._apply_isolated(items)

    async def _apply_isolated(self, items: Sequence[Item]) -> Outcome:
        fresh: set[uuid.UUID] = set()
        failed: dict[uuid.UUID, Exception] = {}
        async with self._engine.begin() as conn:
            for item in items:
                assert item.event is not None
                try:
                    with logged(item):
                        async with conn.begin_nested():
                            fresh |= await self._apply_in(conn, [item])
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    failed[item.event.envelope.id] = exc
        return fresh, failed

    async def _apply_in(self, conn: AsyncConnection, items: Sequence[Item]) -> set[uuid.UUID]:
        events = [item.event for item in items if item.event is not None]
        fresh = await inbox.claim(conn, self._subscriber, events)
        groups: dict[int, tuple[Projection, list[DecodedEvent]]] = {}
        done: set[uuid.UUID] = set()
        for item in items:
            assert item.event is not None and isinstance(item.handler, Projection)
            event_id = item.event.envelope.id
            if event_id in fresh and event_id not in done:
                done.add(event_id)
                group = groups.setdefault(id(item.handler.apply), (item.handler, []))
                group[1].append(item.event)
        for projection, group_events in groups.values():
            await projection.apply(conn, group_events)
        return fresh

    def _count_and_log(self, state: RetryCallState) -> None:
        metrics.QUICK_RETRIES.labels(self._subscriber).inc()
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: batch transaction failed (attempt %d, %r); retrying",
            self._subscriber,
            state.attempt_number,
            exc,
        )
