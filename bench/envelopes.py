"""Real event envelopes (built with ``outbox.events``) and fast ways to load or publish them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import psycopg
from aio_pika.abc import AbstractExchange

from outbox.events import AnswerCreatedV1, Envelope, QuestionCreatedV1, new_envelope
from outbox.topology import EVENTS_EXCHANGE
from outbox.uow import shard_of

SUBJECTS = ("math", "physics", "history", "biology", "english")


def question_event(question_id: uuid.UUID, n: int) -> Envelope:
    data = QuestionCreatedV1(
        question_id=question_id,
        title=f"Benchmark question {n}: why is the sky blue at noon?",
        subject=SUBJECTS[n % len(SUBJECTS)],
        grade=1 + n % 12,
        author="bench",
        created_at=datetime.now(UTC),
    )
    return new_envelope("question.created", "question", question_id, data)


def answer_event(question_id: uuid.UUID) -> Envelope:
    data = AnswerCreatedV1(
        answer_id=uuid.uuid4(),
        question_id=question_id,
        author="bench",
        created_at=datetime.now(UTC),
    )
    return new_envelope("answer.created", "question", question_id, data)


def make_events(count: int, answers_per_question: int = 4) -> list[Envelope]:
    """A realistic stream: each question followed by a few answers to it."""
    events: list[Envelope] = []
    n = 0
    while len(events) < count:
        qid = uuid.uuid4()
        events.append(question_event(qid, n))
        for _ in range(answers_per_question):
            if len(events) < count:
                events.append(answer_event(qid))
        n += 1
    return events


def sample_answer_body() -> bytes:
    """A typical ``answer.created`` body, the message size the ceilings publish."""
    return answer_event(uuid.uuid4()).to_bytes()


OUTBOX_COLUMNS = (
    "event_id, event_type, aggregate_type, aggregate_id, exchange, routing_key, body, headers"
)


def copy_into_outbox(dsn: str, events: Sequence[Envelope], shards: int = 1) -> None:
    """COPY the envelopes into ``qa.outbox`` as pending rows, exactly as the API writes them
    (with ``QA_RELAY_SHARDS=shards``)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY qa.outbox ({OUTBOX_COLUMNS}, shard) FROM STDIN") as copy:
            for env in events:
                copy.write_row(
                    (
                        env.id,
                        env.type,
                        env.aggregate_type,
                        env.aggregate_id,
                        EVENTS_EXCHANGE,
                        env.type,
                        env.to_bytes(),
                        "{}",
                        shard_of(env.aggregate_id, shards),
                    )
                )
        conn.commit()


def message_for(body: bytes, event_id: uuid.UUID, event_type: str) -> aio_pika.Message:
    """Same properties the relay sets (see DESIGN.md "Events and broker topology")."""
    return aio_pika.Message(
        body,
        message_id=str(event_id),
        type=event_type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=datetime.now(UTC),
    )


@dataclass
class PublishResult:
    sent: int
    failed: int
    seconds: float


async def publish_window(
    exchange: AbstractExchange,
    messages: Iterable[tuple[aio_pika.Message, str]],
    window: int,
) -> PublishResult:
    """Publish with confirms, at most ``window`` unconfirmed at once (sliding window).

    A semaphore, not ``asyncio.wait`` over the in-flight set: the latter re-registers a
    callback on every pending future per call and becomes the bottleneck itself.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(window)
    sent = failed = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(message: aio_pika.Message, key: str) -> None:
        nonlocal failed
        try:
            await exchange.publish(message, key, mandatory=True)
        except Exception:
            failed += 1
        finally:
            slots.release()

    started = loop.time()
    for message, key in messages:
        await slots.acquire()
        task = asyncio.create_task(one(message, key))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    for _ in range(window):
        await slots.acquire()
    return PublishResult(sent=sent, failed=failed, seconds=loop.time() - started)


async def publish_events(amqp_url: str, events: Sequence[Envelope], window: int = 1000) -> None:
    """Pre-publish real envelopes to ``qa.events`` (the feed queue must be declared)."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        result = await publish_window(
            exchange, ((message_for(e.to_bytes(), e.id, e.type), e.type) for e in events), window
        )
        if result.failed:
            raise RuntimeError(f"{result.failed} of {result.sent} pre-published events failed")
    finally:
        await connection.close()
