"""RabbitMQ names and declarations: the exchange, and each subscriber's queues.

Per subscriber (see :mod:`outbox.subscribers`): ``<name>.events`` (quorum) bound to
``qa.events`` with exact routing keys, retry tiers ``<name>.retry.<ms>ms`` whose TTL
dead-letters back to ``<name>.events`` through the default exchange (so a retried
message reaches only the queue that failed it, never the other subscribers), and
``<name>.dead`` for the archiver. Every queue is a quorum queue, so each survives the loss
of a cluster node (a classic queue is unavailable while its one node is down, and
re-declaring it from another node fails with NOT_FOUND).

Queue arguments cannot change after a queue exists (RabbitMQ refuses the redeclare).
Each queue is first declared on a throwaway channel; when the broker refuses because the
live arguments differ (an operator changed ``QA_DELIVERY_LIMIT``), the process logs how
to fix it and uses the queue as it is (passive declare) instead of failing to start.
``qa-ops topology check`` shows every difference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
)
from aio_pika.exceptions import ChannelPreconditionFailed

log = logging.getLogger("qa.topology")

EVENTS_EXCHANGE = "qa.events"
APP_ID = "qa-outbox"  # AMQP app_id of every message the relay publishes

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
H_SUBSCRIBER = "x-subscriber"
# The routing key of the first delivery: retried copies arrive with the queue's name as
# routing key (the tier dead-letters through the default exchange), so keep the original.
H_ORIGINAL_ROUTING_KEY = "x-original-routing-key"


def queue_name(subscriber: str) -> str:
    return f"{subscriber}.events"


def dead_queue_name(subscriber: str) -> str:
    return f"{subscriber}.dead"


def retry_queue_name(subscriber: str, delay_seconds: float) -> str:
    """``feed.retry.5000ms``: the delay is in the name, so changing tiers never clashes."""
    return f"{subscriber}.retry.{round(delay_seconds * 1000)}ms"


def quorum_arguments(initial_group_size: int | None = None) -> dict[str, Any]:
    """Arguments of a quorum queue; ``initial_group_size`` sets how many cluster nodes
    hold a replica when it is created (unset: every node of the cluster)."""
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if initial_group_size:
        args["x-quorum-initial-group-size"] = initial_group_size
    return args


def queue_arguments(
    subscriber: str, delivery_limit: int, initial_group_size: int | None = None
) -> dict[str, Any]:
    return {
        **quorum_arguments(initial_group_size),
        # Backstop for consumer crash loops: the broker dead-letters a message that
        # was delivered this many times without being settled.
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_queue_name(subscriber),
    }


def dead_queue_arguments(initial_group_size: int | None = None) -> dict[str, Any]:
    return quorum_arguments(initial_group_size)


def retry_queue_arguments(
    subscriber: str, delay_seconds: float, initial_group_size: int | None = None
) -> dict[str, Any]:
    """A retry tier: a quorum queue (so a tier survives the loss of a cluster node and
    its consumers can re-declare it on another node) whose messages expire after the
    delay and are dead-lettered back to ``<subscriber>.events``, at least once: the
    broker keeps a message until that queue confirmed it (needs ``x-overflow:
    reject-publish``)."""
    return {
        **quorum_arguments(initial_group_size),
        "x-message-ttl": round(delay_seconds * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue_name(subscriber),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@dataclass(frozen=True)
class SubscriberTopology:
    exchange: AbstractExchange
    queue: AbstractQueue
    dead_queue: AbstractQueue
    retry_queues: tuple[str, ...]
    # Queues whose live arguments differ from the declaration (used as they are).
    drifted: tuple[str, ...]


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def _declare_queue(
    connection: AbstractConnection,
    channel: AbstractChannel,
    name: str,
    arguments: dict[str, Any],
) -> tuple[AbstractQueue, bool]:
    """Declare ``name`` with ``arguments``; on an argument mismatch use it as it is.
    Returns the queue and whether its live arguments match."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, durable=True, arguments=arguments)
        matches = True
    except ChannelPreconditionFailed as exc:
        matches = False
        log.warning(
            "queue %s exists with other arguments than declared (%s); using it as it is. "
            "Run `qa-ops topology check` for the difference and how to fix it.",
            name,
            str(exc).splitlines()[0][:300],
        )
    finally:
        if not probe.is_closed:
            await probe.close()
    if matches:
        return await channel.declare_queue(name, durable=True, arguments=arguments), True
    return await channel.declare_queue(name, passive=True), False


async def declare_dead_queue(
    connection: AbstractConnection,
    channel: AbstractChannel,
    subscriber: str,
    initial_group_size: int | None = None,
) -> AbstractQueue:
    """Declare only ``<subscriber>.dead`` (all the archiver needs, and may, touch)."""
    arguments = dead_queue_arguments(initial_group_size)
    queue, _ = await _declare_queue(connection, channel, dead_queue_name(subscriber), arguments)
    return queue


async def declare_subscriber(
    connection: AbstractConnection,
    channel: AbstractChannel,
    subscriber: str,
    bindings: tuple[str, ...],
    retry_delays: list[float],
    delivery_limit: int,
    retired_bindings: tuple[str, ...] = (),
    initial_group_size: int | None = None,
) -> SubscriberTopology:
    """Declare everything a subscriber and the archiver rely on (idempotent); remove the
    ``retired_bindings`` (unbinding one that does not exist is fine)."""
    exchange = await declare_exchange(channel)
    drifted: list[str] = []
    dead_queue, ok = await _declare_queue(
        connection, channel, dead_queue_name(subscriber), dead_queue_arguments(initial_group_size)
    )
    drifted += [] if ok else [dead_queue.name]
    queue, ok = await _declare_queue(
        connection,
        channel,
        queue_name(subscriber),
        queue_arguments(subscriber, delivery_limit, initial_group_size),
    )
    drifted += [] if ok else [queue.name]
    for key in bindings:
        await queue.bind(exchange, routing_key=key)
    for key in retired_bindings:
        if key not in bindings:
            await queue.unbind(exchange, routing_key=key)
    names = []
    for delay in retry_delays:
        name = retry_queue_name(subscriber, delay)
        arguments = retry_queue_arguments(subscriber, delay, initial_group_size)
        tier, ok = await _declare_queue(connection, channel, name, arguments)
        drifted += [] if ok else [name]
        names.append(tier.name)
    return SubscriberTopology(exchange, queue, dead_queue, tuple(names), tuple(drifted))
