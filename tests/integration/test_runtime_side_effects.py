"""The side-effect shape of the runtime (real RabbitMQ and PostgreSQL, a toy subscriber).

A side effect is performed at least once and recorded in the subscriber's inbox (its
sent-log) right after it succeeded; a redelivery of a recorded event is a no-op;
``TransientError`` goes through the retry tiers, ``PermanentMessageError`` is
dead-lettered on the first delivery; ``CancelledError`` is never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Engine

from consumers.runtime.effects import EffectPerformer
from consumers.runtime.item import route
from consumers.runtime.service import make_engine
from outbox.errors import PermanentMessageError, TransientError
from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.subscribers import SideEffect
from tests.integration.test_feed_support import (
    broker,
    envelope_message,
    inbox_ids,
    poll,
    question_event,
    running_consumer,
)
from tests.integration.test_runtime_support import dead_queue, toy_subscriber


class Outbox:
    """What the toy side effect "sent", and how each event should fail first."""

    def __init__(self) -> None:
        self.sent: Counter[uuid.UUID] = Counter()
        self.fail_once: dict[uuid.UUID, Exception] = {}
        self.opened = 0


async def send(outbox: Outbox, event: DecodedEvent) -> None:
    failure = outbox.fail_once.pop(event.envelope.id, None)
    if failure is not None:
        raise failure
    outbox.sent[event.envelope.id] += 1


class Rejected(PermanentMessageError):
    """550 no such mailbox."""


async def test_side_effect_at_least_once_recorded_retried_and_dead_lettered(
    settings: Settings, db: Engine
) -> None:
    outbox = Outbox()

    @contextlib.asynccontextmanager
    async def resources(_settings: Settings, _engine: Any) -> AsyncIterator[Outbox]:
        outbox.opened += 1
        yield outbox

    toy = toy_subscriber({("question.created", 1): SideEffect(send)}, resources=resources)
    ok, flaky, rejected = question_event(), question_event(), question_event()
    outbox.fail_once[flaky.id] = TransientError("421 try again later")
    outbox.fail_once[rejected.id] = Rejected("550 no such mailbox")
    async with (
        broker(settings) as channel,
        running_consumer(settings, toy, retry_delays="0.2") as deliveries,
        dead_queue(settings, toy) as dead,
    ):
        for event in (ok, flaky, rejected):
            await channel.default_exchange.publish(envelope_message(event), toy.queue)
        await poll("ok and flaky sent", lambda: outbox.sent[ok.id] and outbox.sent[flaky.id])
        letter = await poll("rejected dead-lettered", lambda: dead.get(str(rejected.id)))
        await poll("recorded", lambda: inbox_ids(db, [ok.id, flaky.id], toy.name))
        # A redelivery of a recorded event is absorbed by the sent-log.
        await channel.default_exchange.publish(envelope_message(ok), toy.queue)
        await poll("duplicate delivered", lambda: deliveries.counts[str(ok.id)] == 2)
        sentinel = question_event()
        await channel.default_exchange.publish(envelope_message(sentinel), toy.queue)
        await poll("sentinel sent", lambda: outbox.sent[sentinel.id])
    assert outbox.sent[ok.id] == 1 and outbox.sent[flaky.id] == 1
    assert deliveries.counts[str(flaky.id)] == 2  # failed once, retried through a tier
    assert outbox.sent[rejected.id] == 0 and deliveries.counts[str(rejected.id)] == 1
    assert letter.headers["x-disposition"] == "permanent"
    assert letter.headers["x-error-class"] == "Rejected"
    assert "550 no such mailbox" in str(letter.headers["x-error-message"])
    assert inbox_ids(db, [ok.id, flaky.id, rejected.id], toy.name) == {ok.id, flaky.id}
    assert outbox.opened == 1


async def test_cancellation_inside_a_side_effect_is_never_swallowed(settings: Settings) -> None:
    async def cancelled(_resources: Any, _event: DecodedEvent) -> None:
        raise asyncio.CancelledError

    toy = toy_subscriber({("question.created", 1): SideEffect(cancelled)})
    engine = make_engine(toy, settings)
    try:

        class Message:  # what route() and the log binding read of an incoming message
            body = question_event().to_bytes()
            message_id = None
            delivery_tag = 1

        item = route(toy, Message())  # type: ignore[arg-type]
        performer = EffectPerformer(toy.name, engine, None, concurrency=2)
        with pytest.raises(asyncio.CancelledError):
            await performer.perform([item])
    finally:
        await engine.dispose()
