"""Consumers keep consuming while the broker blocks publishers (issue 12).

A memory alarm on a private RabbitMQ node (``rabbitmqctl set_vm_memory_high_watermark
0``, never the shared node) blocks every connection that publishes. A subscriber
consumes on one connection and publishes its retry and dead-letter copies on another
(``qa-consumer-<name>-publish``), so with messages already in its queue it must go on
applying and acking them while the alarm is on. Messages that need a copy published
(a transient failure to retry, a permanent one to dead-letter) are held unacked until
the alarm clears, without stopping the others, and are settled after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from sqlalchemy import Engine, text

from consumers.runtime import settle
from outbox.errors import PermanentMessageError, TransientError
from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.subscribers import SideEffect, Subscriber
from tests.integration.test_feed_support import (
    declare,
    envelope_message,
    poll,
    question_event,
    running_consumer,
)
from tests.integration.test_relay_backpressure import alarm, rabbit  # noqa: F401 (fixture)
from tests.integration.test_runtime_support import dead_queue, toy_subscriber
from tests.support.private_rabbit import PrivateRabbit

OK_MESSAGES = 300


class Rejected(PermanentMessageError):
    """Never applicable: dead-lettered on its first delivery."""


class Effects:
    """The toy side effect: slow enough that the queue drains visibly; ``flaky`` ids fail
    transiently while ``alarm_on``; ``rejected`` ids always fail permanently."""

    def __init__(self) -> None:
        self.done: Counter[uuid.UUID] = Counter()
        self.flaky: set[uuid.UUID] = set()
        self.rejected: set[uuid.UUID] = set()
        self.alarm_on = False

    async def perform(self, _resources: Any, event: DecodedEvent) -> None:
        await asyncio.sleep(0.01)
        if event.envelope.id in self.rejected:
            raise Rejected("never applicable")
        if event.envelope.id in self.flaky and self.alarm_on:
            raise TransientError("downstream busy")
        self.done[event.envelope.id] += 1


def queue_counts(node: PrivateRabbit, queue: str) -> tuple[int, int]:
    """(ready, unacked) messages of ``queue``."""
    out = node.ctl(
        "list_queues", "-q", "--formatter", "json", "name", "messages_ready",
        "messages_unacknowledged",
    ).stdout  # fmt: skip
    for row in json.loads(out or "[]"):
        if row["name"] == queue:
            return int(row["messages_ready"]), int(row["messages_unacknowledged"])
    raise AssertionError(f"no queue {queue}")


def connection_states(node: PrivateRabbit) -> dict[str, str]:
    """Connection name (client property) -> state (running, blocking, blocked, ...)."""
    out = node.ctl(
        "list_connections", "-q", "--formatter", "json", "client_properties", "state"
    ).stdout
    states = {}
    for row in json.loads(out or "[]"):
        props = row["client_properties"]
        # rabbitmqctl renders client properties as [name, type, value] triples
        pairs = {p[0]: p[2] for p in props} if isinstance(props, list) else props
        states[str(pairs.get("connection_name", ""))] = str(row["state"])
    return states


def inbox_count(db: Engine, subscriber: str, ids: list[uuid.UUID]) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM subscribers.inbox WHERE subscriber = :s"
                    " AND event_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"s": subscriber, "ids": ids},
            ).scalar_one()
        )


@contextlib.asynccontextmanager
async def topology(url: str, settings: Settings, subscriber: Subscriber) -> AsyncIterator[Any]:
    """A confirming channel, with ``subscriber``'s topology declared."""
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare(connection, channel, settings, subscriber)
        yield channel


async def test_subscriber_keeps_consuming_while_publishers_are_blocked(
    settings: Settings,
    db: Engine,
    rabbit: PrivateRabbit,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="qa.consumer")
    # The copy that meets the alarm first waits out its publish timeout: keep it short.
    monkeypatch.setattr(settle, "PUBLISH_TIMEOUT_SECONDS", 2.0)
    effects = Effects()
    toy = toy_subscriber(
        {("question.created", 1): SideEffect(effects.perform)}, batch_size=20, prefetch=50
    )
    url = rabbit.amqp_url()
    private = Settings(**{**settings.model_dump(), "amqp_url": url, "retry_delays": "0.2"})
    events = [question_event() for _ in range(OK_MESSAGES)]
    flaky = [events[0], events[100], events[200]]  # the first one meets the alarm first
    rejected = events[150]
    effects.flaky = {e.id for e in flaky}
    effects.rejected = {rejected.id}
    ok_ids = [e.id for e in events if e.id not in effects.flaky and e is not rejected]

    async with topology(url, private, toy) as channel, dead_queue(private, toy) as dead:
        for event in events:
            await channel.default_exchange.publish(envelope_message(event), toy.queue)
        await alarm(rabbit, "0")
        effects.alarm_on = True
        # A publisher of our own shows that publishing really is blocked now.
        probe = asyncio.create_task(
            channel.default_exchange.publish(
                envelope_message(question_event()), "nowhere", mandatory=False
            )
        )
        async with running_consumer(private, toy, retry_delays="0.2") as deliveries:
            seen: list[tuple[int, int, int]] = []

            def progress() -> bool:
                ready, unacked = queue_counts(rabbit, toy.queue)
                seen.append((ready, unacked, inbox_count(db, toy.name, ok_ids)))
                return seen[-1][2] == len(ok_ids)

            await poll("every applicable message applied during the alarm", progress, 90)
            states = connection_states(rabbit)
            # Still blocked: nothing was published, not even the probe.
            assert not probe.done()
            assert states[f"qa-consumer-{toy.name}-publish"] == "blocked", states
            # "blocking": would be blocked if it published; it only consumes and acks.
            assert states[f"qa-consumer-{toy.name}"] in ("running", "blocking"), states
            # The queue drained while blocked; only the failed ones are held, unacked.
            await poll(
                "only the failed messages left, held unacked",
                lambda: queue_counts(rabbit, toy.queue) == (0, len(flaky) + 1),
            )
            # It started with a backlog that fell while blocked.
            assert seen[-1][0] < max(ready for ready, _, _ in seen)
            inboxes = [n for _, _, n in seen]
            assert inboxes == sorted(inboxes) and inboxes[0] < inboxes[-1]
            assert not dead.by_id and sum(effects.done[e.id] for e in flaky) == 0
            # Held, not redelivered over and over (the delivery limit is not consumed):
            # the first copy met the block (timed out, requeued), the others never left.
            first_deliveries = {str(e.id): deliveries.counts[str(e.id)] for e in flaky}
            assert first_deliveries[str(flaky[0].id)] <= 2, first_deliveries
            assert all(
                first_deliveries[str(e.id)] == 1 for e in flaky[1:]
            ), first_deliveries  # fmt: skip

            effects.alarm_on = False
            await alarm(rabbit, "0.4")
            await asyncio.wait_for(probe, 30)
            await poll("flaky ones applied", lambda: all(effects.done[e.id] for e in flaky), 60)
            letter = await poll(
                "the rejected one dead-lettered", lambda: dead.get(str(rejected.id))
            )
            await poll("queue empty", lambda: queue_counts(rabbit, toy.queue) == (0, 0))
            assert inbox_count(db, toy.name, [e.id for e in events]) == OK_MESSAGES - 1
    assert letter.headers["x-error-class"] == "Rejected"
    assert all(effects.done[i] == 1 for i in ok_ids)
    said = [r.getMessage() for r in caplog.records if r.name == "qa.consumer"]
    assert any("holding" in m for m in said), said
    print(f"while blocked, (ready, unacked, applied) per look: {seen}")
