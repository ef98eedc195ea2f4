"""Helpers for tests of the generic subscriber runtime with toy subscribers. No tests.

A toy subscriber gets a unique name per test (``rt_<hex>``), so its queues and inbox rows
never meet another test's; tests publish straight to its queue through the default
exchange and read its dead letters from ``<name>.dead``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika

from outbox.settings import Settings
from outbox.subscribers import EventKey, Handler, Subscriber, Tuning
from tests.integration.test_feed_support import DeadLetters, declare


def toy_subscriber(
    handlers: Mapping[EventKey, Handler], resources: Any = None, **tuning: Any
) -> Subscriber:
    return Subscriber(
        name=f"rt_{uuid.uuid4().hex[:10]}",
        handlers=handlers,
        resources=resources,
        tuning=Tuning(**tuning),
    )


@contextlib.asynccontextmanager
async def dead_queue(settings: Settings, subscriber: Subscriber) -> AsyncIterator[DeadLetters]:
    """Consume ``subscriber``'s dead-letter queue (declaring its topology first)."""
    store = DeadLetters()
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        topology = await declare(connection, channel, settings, subscriber)
        tag = await topology.dead_queue.consume(store.on_message)
        try:
            yield store
        finally:
            await topology.dead_queue.cancel(tag)
