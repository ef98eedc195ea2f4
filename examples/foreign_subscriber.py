"""Subscribe to the Q&A service's events from another service, with pika.

Uses nothing from the Q&A code base: a third-party AMQP client, the exchange name and
the published contract (GET /asyncapi). It binds its own durable queue to ``qa.events``,
decodes each message as the contract says, keeps the latest question titles by
``sequence`` (delivery order is not guaranteed) and acks after handling.

    python examples/foreign_subscriber.py amqp://guest:guest@127.0.0.1:5672/ my-team.qa-events
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pika

EXCHANGE = "qa.events"


def declare(channel: Any, queue: str, routing_keys: tuple[str, ...]) -> None:
    """Our own durable queue, bound to the event types we want."""
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True, passive=True)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    for key in routing_keys:
        channel.queue_bind(queue, EXCHANGE, routing_key=key)


def decode(properties: Any, body: bytes) -> dict[str, Any]:
    """The envelope: {id, type, version, occurred_at, aggregate_type, aggregate_id,
    sequence, data}. Unknown fields are to be ignored (additive changes keep the version)."""
    if properties.content_type != "application/json":
        raise ValueError(f"unexpected content type {properties.content_type!r}")
    event: dict[str, Any] = json.loads(body.decode(properties.content_encoding or "utf-8"))
    return event


class LatestTitles:
    """Question id -> (sequence, title, subject, grade): the highest sequence wins."""

    def __init__(self) -> None:
        self.questions: dict[str, tuple[int, str, str, int]] = {}
        self.seen: set[str] = set()  # event ids: delivery is at least once

    def __call__(self, event: dict[str, Any]) -> None:
        if event["id"] in self.seen:
            return
        self.seen.add(event["id"])
        data, sequence = event["data"], event.get("sequence") or 0
        if event["type"] in ("question.created", "question.edited"):
            state = data["question_id"], data["title"], data["subject"], data["grade"]
        elif event["type"] == "answer.created" and event["version"] == 2:
            q = data["question"]
            state = q["id"], q["title"], q["subject"], q["grade"]
        else:
            return  # a type or version we do not use
        question_id, title, subject, grade = state
        if sequence > self.questions.get(question_id, (-1,))[0]:
            self.questions[question_id] = (sequence, title, subject, grade)


def subscribe(
    amqp_url: str,
    queue: str,
    handle: Callable[[dict[str, Any]], None],
    routing_keys: tuple[str, ...] = ("question.*", "answer.*"),
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Consume until ``until()`` is true (checked after each message and each idle second)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        declare(channel, queue, routing_keys)
        channel.basic_qos(prefetch_count=100)
        for method, properties, body in channel.consume(queue, inactivity_timeout=1):
            if method is not None:
                handle(decode(properties, body))
                channel.basic_ack(method.delivery_tag)  # after handling: at least once
            if until():
                break
        channel.cancel()  # unacked messages go back to the queue
    finally:
        connection.close()


if __name__ == "__main__":
    url, queue_name = sys.argv[1], sys.argv[2]
    titles = LatestTitles()

    def show(event: dict[str, Any]) -> None:
        titles(event)
        print(time.strftime("%H:%M:%S"), event["type"], f"v{event['version']}", event["data"])

    subscribe(url, queue_name, show)
