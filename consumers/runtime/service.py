"""Start-up and shutdown of one subscriber (``qa-consumer run <name>``).

Connects to the subscriber's database and RabbitMQ (each within
``startup_timeout_seconds``, else :class:`~outbox.errors.StartupError`), declares its
topology, opens its resources, serves metrics, and runs
:class:`~consumers.runtime.consumer.SubscriberConsumer` and the inbox retention loop until
cancelled. On cancellation (SIGTERM/SIGINT through ``outbox.runtime.run``) the in-flight
batch is abandoned: its transaction rolls back or has committed, its unacked messages
return to the queue when the connection closes, and the inbox absorbs any redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.runtime import metrics
from consumers.runtime.consumer import OnDelivery, SubscriberConsumer
from consumers.runtime.retention import retention_loop
from consumers.runtime.settle import Policy
from outbox import tracing
from outbox.amqp import connect_cluster, is_blocked
from outbox.db import make_async_engine
from outbox.runtime import cancel_requests, connect_with_retry, stop_if_cancel_swallowed
from outbox.settings import Settings, redact
from outbox.subscribers import Subscriber
from outbox.topology import declare_subscriber

log = logging.getLogger("qa.consumer")


def make_engine(subscriber: Subscriber, settings: Settings) -> AsyncEngine:
    """The engine on the subscriber's database. One batch at a time needs one connection."""
    return make_async_engine(
        subscriber.database_url(settings),
        application_name=f"qa-consumer-{subscriber.name}",
        # A stuck statement must end as a (transient) error, not stall the consumer.
        options="-c statement_timeout=30000 -c lock_timeout=10000",
        pool_size=2,
        max_overflow=2,
    )


async def _ping(engine: AsyncEngine) -> None:
    with tracing.untraced():  # no trace of its own for the start-up probe
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


async def run_subscriber(
    settings: Settings,
    subscriber: Subscriber,
    *,
    on_delivery: OnDelivery | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run ``subscriber`` until cancelled. ``ready`` is set once it is consuming."""
    budget = settings.startup_timeout_seconds
    stops_before = cancel_requests()
    name = subscriber.name
    url = subscriber.database_url(settings)
    tuning = subscriber.tuning
    engine = make_engine(subscriber, settings)
    server: Any = None
    try:

        async def connect() -> AbstractRobustConnection:
            return await connect_cluster(
                settings.amqp_url.get_secret_value(), name=f"qa-consumer-{name}"
            )

        # Retries and dead letters are published on a connection of their own: during a
        # memory or disk alarm RabbitMQ blocks a connection that publishes (it stops
        # reading it, acks included), and consuming must go on (issue 12).
        async def connect_publishing() -> AbstractRobustConnection:
            return await connect_cluster(
                settings.amqp_url.get_secret_value(), name=f"qa-consumer-{name}-publish"
            )

        await connect_with_retry(f"{name} database at {redact(url)}", lambda: _ping(engine), budget)
        connection = await connect_with_retry(
            f"RabbitMQ at {redact(settings.amqp_url)}", connect, budget
        )
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(connection)
            publishing = await connect_with_retry(
                f"RabbitMQ at {redact(settings.amqp_url)}", connect_publishing, budget
            )
            await stack.enter_async_context(publishing)
            resources = None
            if subscriber.resources is not None:
                resources = await stack.enter_async_context(subscriber.resources(settings, engine))
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=tuning.prefetch or settings.consumer_prefetch)
            publisher = await publishing.channel(publisher_confirms=True, on_return_raises=True)
            topology = await declare_subscriber(
                connection,
                channel,
                name,
                subscriber.bindings,
                settings.retry_delays,
                settings.delivery_limit,
                subscriber.retired_bindings,
                settings.quorum_initial_group_size,
            )
            # Strong references: the consumer holds the queue, this frame holds the consumer.
            consumer = SubscriberConsumer(
                subscriber,
                engine,
                topology.queue,
                publisher,
                Policy(settings.retry_delays, settings.unknown_error_retries),
                batch_size=tuning.batch_size or settings.consumer_batch_size,
                batch_wait_ms=tuning.batch_wait_ms
                if tuning.batch_wait_ms is not None
                else settings.consumer_batch_wait_ms,
                resources=resources,
                on_delivery=on_delivery,
                publisher_blocked=lambda wait: is_blocked(publishing, wait),
            )
            await consumer.start()
            # Serving /metrics doubles as the readiness signal: it is up once consuming.
            server = metrics.serve(subscriber.metrics_port(settings))
            log.info(
                "subscriber %s started on %s (db %s, queue %s, bindings %s, tiers %s)",
                name,
                redact(settings.amqp_url),
                redact(url),
                topology.queue.name,
                ",".join(subscriber.bindings),
                ",".join(f"{d:g}s" for d in settings.retry_delays),
            )
            if ready is not None:
                ready.set()
            retention = asyncio.create_task(
                retention_loop(
                    engine,
                    name,
                    settings.inbox_retention_seconds,
                    settings.inbox_retention_batch,
                    settings.inbox_retention_interval_seconds,
                ),
                name=f"{name}-inbox-retention",
            )
            try:
                # A stop that arrived during start-up and was swallowed on the way (seen
                # on 3.11: the task stayed "cancelling" and then consumed forever).
                stop_if_cancel_swallowed(stops_before)
                await consumer.run()
            finally:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
                await consumer.stop()
    except Exception as exc:
        # A stop that the broker client turned into an error on the way out (e.g. a
        # channel whose opening was cancelled: "CHANNEL_ERROR - expected 'channel.open'")
        # is still a stop, not a failure of the subscriber.
        if cancel_requests() > stops_before:
            raise asyncio.CancelledError() from exc
        raise
    finally:
        if server is not None:
            server.shutdown()
        await engine.dispose()
