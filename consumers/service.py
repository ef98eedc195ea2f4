"""Start-up and shutdown of the feed consumer (``qa-consumer feed``).

Connects to the feed database and RabbitMQ (each within ``startup_timeout_seconds``,
else :class:`~outbox.errors.StartupError`), declares the feed topology, serves
metrics, and runs :class:`~consumers.consumer.FeedConsumer` until cancelled. On
cancellation (SIGTERM/SIGINT through ``outbox.runtime.run``) the in-flight batch is
abandoned: its transaction rolls back or has committed, its unacked messages return
to the queue when the connection closes, and the inbox absorbs any redelivery.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers import metrics
from consumers.consumer import FeedConsumer, OnDelivery
from outbox.amqp import connect_cluster
from outbox.db import make_async_engine
from outbox.runtime import connect_with_retry
from outbox.settings import Settings, redact
from outbox.topology import declare_feed

log = logging.getLogger("qa.consumer.feed")


def make_feed_engine(settings: Settings) -> AsyncEngine:
    """The engine on the feed database. One batch at a time needs one connection."""
    return make_async_engine(
        settings.feed_url,
        application_name="qa-consumer-feed",
        # A stuck statement must end as a (transient) error, not stall the consumer.
        options="-c statement_timeout=30000 -c lock_timeout=10000",
        pool_size=2,
        max_overflow=2,
    )


async def _ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def run_feed(
    settings: Settings,
    *,
    on_delivery: OnDelivery | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the feed consumer until cancelled. ``ready`` is set once it is consuming."""
    budget = settings.startup_timeout_seconds
    engine = make_feed_engine(settings)
    server = None
    try:

        async def ping() -> None:
            await _ping(engine)

        async def connect() -> AbstractRobustConnection:
            return await connect_cluster(
                settings.amqp_url.get_secret_value(), name="qa-consumer-feed"
            )

        await connect_with_retry(f"feed database at {redact(settings.feed_url)}", ping, budget)
        connection = await connect_with_retry(
            f"RabbitMQ at {redact(settings.amqp_url)}", connect, budget
        )
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=settings.consumer_prefetch)
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            topology = await declare_feed(
                channel,
                settings.retry_delays,
                settings.delivery_limit,
                settings.quorum_initial_group_size,
            )
            # Strong references: the consumer holds the queue, this frame holds the consumer.
            consumer = FeedConsumer(settings, engine, topology.queue, publisher, on_delivery)
            await consumer.start()
            # Serving /metrics doubles as the readiness signal: it is up once consuming.
            server = metrics.serve(settings.consumer_metrics_port)
            log.info(
                "feed consumer started on %s (db %s, prefetch %d, batch %d/%dms, tiers %s)",
                redact(settings.amqp_url),
                redact(settings.feed_url),
                settings.consumer_prefetch,
                settings.consumer_batch_size,
                settings.consumer_batch_wait_ms,
                ",".join(f"{d:g}s" for d in settings.retry_delays),
            )
            if ready is not None:
                ready.set()
            try:
                await consumer.run()
            finally:
                await consumer.stop()
    finally:
        if server is not None:
            server.shutdown()
        await engine.dispose()
