"""RabbitMQ names and declarations: the exchange, the feed queue, its retry tiers and dead letters.

Retry tiers are queues with a per-queue TTL that dead-letter back to ``feed.events``
through the default exchange, so a retried message reaches only the queue that failed
it, never the other subscribers of ``qa.events``. Every queue is a quorum queue, so each
survives the loss of a cluster node (a classic queue is unavailable while its one node
is down, and re-declaring it from another node fails with NOT_FOUND).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

EVENTS_EXCHANGE = "qa.events"
APP_ID = "qa-outbox"  # AMQP app_id of every message the relay publishes
FEED_QUEUE = "feed.events"
FEED_BINDINGS = ("question.*", "answer.*")
FEED_DEAD_QUEUE = "feed.dead"
# Queues a dead letter may be replayed to. ``x-failed-queue`` comes from message headers,
# which anything able to publish to feed.dead controls: never aim a replay elsewhere.
REPLAYABLE_QUEUES = frozenset({FEED_QUEUE})

# Headers a consumer adds when it retries or dead-letters a message.
H_ATTEMPTS = "x-attempts"
H_ERROR_CLASS = "x-error-class"
H_ERROR_MESSAGE = "x-error-message"
H_FIRST_FAILED_AT = "x-first-failed-at"
H_FAILED_QUEUE = "x-failed-queue"
H_DISPOSITION = "x-disposition"
H_DEAD_LETTER_ID = "x-dead-letter-id"
H_TRACEBACK = "x-traceback"
H_REPLAYED_FROM = "x-replayed-from"
H_HISTORY = "x-history"


def retry_queue_name(queue: str, delay_seconds: float) -> str:
    """``feed.retry.5000ms``: the delay is in the name so changing tiers never clashes."""
    base = queue.removesuffix(".events")
    return f"{base}.retry.{round(delay_seconds * 1000)}ms"


@dataclass(frozen=True)
class FeedTopology:
    exchange: AbstractExchange
    queue: AbstractQueue
    dead_queue: AbstractQueue
    retry_queues: tuple[str, ...]


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


def quorum_arguments(initial_group_size: int | None = None) -> dict[str, Any]:
    """Arguments of a quorum queue; ``initial_group_size`` sets how many cluster nodes
    hold a replica when it is created (unset: every node of the cluster)."""
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if initial_group_size:
        args["x-quorum-initial-group-size"] = initial_group_size
    return args


def retry_queue_arguments(
    delay_seconds: float, back_to: str, initial_group_size: int | None = None
) -> dict[str, Any]:
    """A retry tier: a quorum queue (so a tier survives the loss of a cluster node and
    its consumers can re-declare it on another node) whose messages expire after the
    delay and are dead-lettered back to ``back_to``, at least once: the broker keeps a
    message until ``back_to`` has confirmed it (this needs ``x-overflow: reject-publish``)."""
    return {
        **quorum_arguments(initial_group_size),
        "x-message-ttl": round(delay_seconds * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": back_to,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_feed(
    channel: AbstractChannel,
    retry_delays: list[float],
    delivery_limit: int,
    quorum_group_size: int | None = None,
) -> FeedTopology:
    """Declare everything the feed consumer and its dead-letter archiver rely on (idempotent)."""
    exchange = await declare_exchange(channel)
    dead_queue = await channel.declare_queue(
        FEED_DEAD_QUEUE, durable=True, arguments=quorum_arguments(quorum_group_size)
    )
    queue = await channel.declare_queue(
        FEED_QUEUE,
        durable=True,
        arguments={
            **quorum_arguments(quorum_group_size),
            # Backstop for consumer crash loops: the broker dead-letters a message that
            # was delivered this many times without being settled.
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": FEED_DEAD_QUEUE,
        },
    )
    for key in FEED_BINDINGS:
        await queue.bind(exchange, routing_key=key)
    names = []
    for delay in retry_delays:
        name = retry_queue_name(FEED_QUEUE, delay)
        await channel.declare_queue(
            name,
            durable=True,
            arguments=retry_queue_arguments(delay, FEED_QUEUE, quorum_group_size),
        )
        names.append(name)
    return FeedTopology(exchange, queue, dead_queue, tuple(names))
