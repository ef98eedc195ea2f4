"""Helpers shared by the feed consumer tests (integration and e2e). Holds no tests itself.

Tests publish envelopes built with ``outbox.events`` straight to ``qa.events`` (or poison
bytes), run the consumer in-process (:func:`running_consumer`) and observe the feed
tables, the consumer's deliveries (counted per message id) and ``feed.dead``
(:class:`DeadLetters`). Every test uses fresh uuid4 ids, so leftovers of other tests in
the shared vhost and database never confuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from sqlalchemy import Engine, text

from consumers.feed import SUBSCRIBER as FEED
from consumers.runtime.consumer import OnDelivery
from consumers.runtime.service import run_subscriber
from outbox.events import AnswerCreatedV1, Envelope, QuestionCreatedV1, new_envelope
from outbox.settings import Settings
from outbox.subscribers import Subscriber
from outbox.topology import EVENTS_EXCHANGE, SubscriberTopology, declare_subscriber

FEED_QUEUE = FEED.queue
FEED_DEAD_QUEUE = FEED.dead_queue


async def declare(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    settings: Settings,
    subscriber: Subscriber = FEED,
) -> SubscriberTopology:
    """Declare ``subscriber``'s topology (the feed's by default) as its process would."""
    return await declare_subscriber(
        connection,
        channel,
        subscriber.name,
        subscriber.bindings,
        settings.retry_delays,
        settings.delivery_limit,
    )


async def run_feed(
    settings: Settings,
    *,
    on_delivery: OnDelivery | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    await run_subscriber(settings, FEED, on_delivery=on_delivery, ready=ready)


def question_event(qid: uuid.UUID | None = None, **data: Any) -> Envelope:
    qid = qid or uuid.uuid4()
    fields: dict[str, Any] = {
        "question_id": qid,
        "title": "What is a prime number?",
        "subject": "math",
        "grade": 5,
        "author": "alice",
        "created_at": datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
        **data,
    }
    return new_envelope("question.created", "question", qid, QuestionCreatedV1(**fields))


def answer_event(qid: uuid.UUID, minute: int = 1) -> Envelope:
    aid = uuid.uuid4()
    created = datetime(2024, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minute)
    data = AnswerCreatedV1(answer_id=aid, question_id=qid, author="bob", created_at=created)
    return new_envelope("answer.created", "answer", aid, data)


def amqp_message(
    body: bytes,
    *,
    message_id: str | None = None,
    type_: str | None = None,
    headers: dict[str, Any] | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        message_id=message_id or str(uuid.uuid4()),
        type=type_,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=datetime.now(UTC),
        headers=headers or {},
    )


def envelope_message(envelope: Envelope, **kwargs: Any) -> aio_pika.Message:
    return amqp_message(
        envelope.to_bytes(), message_id=str(envelope.id), type_=envelope.type, **kwargs
    )


@contextlib.asynccontextmanager
async def broker(settings: Settings) -> AsyncIterator[AbstractChannel]:
    """A confirming channel with the feed topology declared."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(
        settings.amqp_url.get_secret_value()
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare(connection, channel, settings)
        yield channel


async def publish(channel: AbstractChannel, message: aio_pika.Message, routing_key: str) -> None:
    """Publish to ``qa.events`` and wait for the broker's confirm."""
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    await exchange.publish(message, routing_key=routing_key, mandatory=True)


async def publish_events(channel: AbstractChannel, envelopes: Iterable[Envelope]) -> None:
    for envelope in envelopes:
        await publish(channel, envelope_message(envelope), envelope.type)


class Deliveries:
    """Counts what the consumer received, per message id (its ``on_delivery`` hook)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, message: AbstractIncomingMessage) -> None:
        self.counts[message.message_id or ""] += 1


class DeadLetters:
    """Every message consumed from a dead-letter queue (``feed.dead`` here, any
    subscriber's in ``test_runtime_support``), by message id."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[AbstractIncomingMessage]] = defaultdict(list)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.by_id[message.message_id or ""].append(message)
        await message.ack()

    def get(self, message_id: str) -> AbstractIncomingMessage | None:
        found = self.by_id.get(message_id)
        return found[0] if found else None


@contextlib.asynccontextmanager
async def dead_letters(settings: Settings) -> AsyncIterator[DeadLetters]:
    store = DeadLetters()
    async with broker(settings) as channel:
        queue = await channel.get_queue(FEED_DEAD_QUEUE)
        tag = await queue.consume(store.on_message)
        try:
            yield store
        finally:
            await queue.cancel(tag)


@contextlib.asynccontextmanager
async def running_consumer(
    settings: Settings, subscriber: Subscriber = FEED, **overrides: Any
) -> AsyncIterator[Deliveries]:
    """``subscriber`` (the feed by default) as a task of this event loop; cancelled (a
    SIGTERM-like stop) on exit."""
    deliveries = Deliveries()
    ready = asyncio.Event()
    # Built anew (not model_copy) so overrides are validated like environment values.
    consumer_settings = Settings(
        **{**settings.model_dump(), "consumer_metrics_port": 0, **overrides}
    )
    task = asyncio.create_task(
        run_subscriber(consumer_settings, subscriber, on_delivery=deliveries, ready=ready)
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiter.cancel()
        if task.done():
            task.result()  # raises the start-up error
        task.cancel()
        raise AssertionError("feed consumer did not start within 30 s")
    try:
        yield deliveries
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def poll(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:  # noqa: ASYNC109
    """Await until ``check()`` (sync or async) is truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


FEED_COLUMNS = "title, subject, grade, created_at, answer_count, last_answer_at, answered"


def feed_row(db: Engine, qid: uuid.UUID) -> dict[str, Any] | None:
    with db.connect() as conn:
        row = (
            conn.execute(
                text(f"SELECT {FEED_COLUMNS} FROM feed.questions WHERE question_id = :q"),
                {"q": qid},
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def inbox_ids(db: Engine, ids: Iterable[uuid.UUID], subscriber: str = "feed") -> set[uuid.UUID]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT event_id FROM subscribers.inbox WHERE subscriber = :s"
                " AND event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(ids), "s": subscriber},
        )
        return {row[0] for row in rows}
