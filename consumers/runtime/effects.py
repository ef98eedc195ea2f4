"""Performing the side-effect events of a batch: at least once, a no-op once recorded.

For each event not yet in the subscriber's inbox (its sent-log), ``SideEffect.perform``
is called; right after it returns, the inbox row is written in its own short
transaction. A redelivery of a recorded event is skipped. The one window where an
effect can happen twice: the process dies (or the database fails) after ``perform``
succeeded and before the inbox row committed - the redelivery performs it again.

Effects of one batch run concurrently, at most ``concurrency`` at a time. An exception
from ``perform`` is the failure of that one message (classified by the settler);
``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.runtime import inbox
from consumers.runtime.item import Item, logged
from outbox.subscribers import SideEffect


class EffectPerformer:
    """Performs side-effect items of one subscriber."""

    def __init__(
        self, subscriber: str, engine: AsyncEngine, resources: Any, concurrency: int
    ) -> None:
        self._subscriber = subscriber
        self._engine = engine
        self._resources = resources
        self._limit = asyncio.Semaphore(max(concurrency, 1))

    async def perform(self, items: Sequence[Item]) -> None:
        """Set ``applied`` (or ``error``) on every item."""
        ids = [item.event.envelope.id for item in items if item.event is not None]
        try:
            done = await inbox.seen(self._engine, self._subscriber, ids)
        except Exception as exc:  # the sent-log is unreadable: nothing may be sent
            for item in items:
                item.error = exc
            return
        todo: list[Item] = []
        first: set[Any] = set()
        for item in items:
            assert item.event is not None
            event_id = item.event.envelope.id
            if event_id in done or event_id in first:
                item.applied = False  # recorded before, or a second copy in this batch
            else:
                first.add(event_id)
                todo.append(item)
        results = await asyncio.gather(*(self._one(item) for item in todo), return_exceptions=True)
        for item, result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                item.error = result
            elif isinstance(result, BaseException):
                raise result  # CancelledError and friends are never swallowed
            else:
                item.applied = result

    async def _one(self, item: Item) -> bool:
        assert item.event is not None and isinstance(item.handler, SideEffect)
        with logged(item):
            async with self._limit:
                await item.handler.perform(self._resources, item.event)
            return await inbox.record(self._engine, self._subscriber, item.event)
