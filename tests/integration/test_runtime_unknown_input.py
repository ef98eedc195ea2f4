"""Unknown input never crashes a subscriber (real RabbitMQ and PostgreSQL).

* an event type with a registered schema that the subscriber does not declare (the old
  ``TypeError`` path: ``user.registered`` has a schema, the feed no projection);
* a batch mixing such events, ``question.created`` version 2 and valid events: the valid
  ones are applied, the others dead-lettered on their first delivery, the process stays up;
* an exception escaping subscriber code is classified (retried, then dead-lettered as
  ``unknown``), never a process exit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from outbox.events import DecodedEvent, UserRegisteredV1, new_envelope
from outbox.settings import Settings
from outbox.subscribers import Projection
from tests.integration.test_feed_support import (
    FEED_QUEUE,
    amqp_message,
    broker,
    dead_letters,
    envelope_message,
    feed_row,
    inbox_ids,
    poll,
    question_event,
    running_consumer,
)
from tests.integration.test_runtime_support import dead_queue, toy_subscriber


def _user_registered() -> bytes:
    data = UserRegisteredV1.model_validate(
        {
            "name": f"u{uuid.uuid4().hex[:8]}",
            "email": None,
            "opted_out": False,
            "revision": 1,
            "changed_at": datetime.now(UTC),
        }
    )
    return new_envelope("user.registered", "user", data.name, data).to_bytes()


def _question_v2() -> bytes:
    raw = orjson.loads(question_event().to_bytes())
    raw["version"] = 2
    return orjson.dumps(raw)


async def test_batch_mixing_unknown_and_valid_events_applies_the_valid_ones(
    settings: Settings, db: Engine
) -> None:
    qids = [uuid.uuid4() for _ in range(3)]
    valid = [question_event(qid) for qid in qids]
    registered_not_declared, no_schema = str(uuid.uuid4()), str(uuid.uuid4())
    unknown = {registered_not_declared: _user_registered(), no_schema: _question_v2()}
    why = {
        registered_not_declared: "user.registered v1 is not accepted by this subscriber",
        no_schema: "no schema for 'question.created' version 2",
    }
    async with (
        broker(settings) as channel,
        dead_letters(settings) as dead,
        # A long batch wait: the six messages form one batch.
        running_consumer(settings, consumer_batch_wait_ms=500) as deliveries,
    ):
        messages = [envelope_message(valid[0])]
        messages += [amqp_message(body, message_id=mid) for mid, body in unknown.items()]
        messages += [envelope_message(e) for e in valid[1:]]
        # Straight into feed.events: bindings are exact, so only a misrouted or replayed
        # message can bring an undeclared type; it must still not hurt the batch.
        for message in messages:
            await channel.default_exchange.publish(message, FEED_QUEUE, mandatory=True)
        await poll("valid events applied", lambda: len(inbox_ids(db, [e.id for e in valid])) == 3)
        for mid in unknown:
            await poll(f"dead letter {mid}", lambda mid=mid: dead.get(mid))
        # The process is still up and consuming: a later event is applied too.
        later = question_event()
        await channel.default_exchange.publish(envelope_message(later), FEED_QUEUE)
        await poll("event after the batch", lambda: inbox_ids(db, [later.id]))
        for mid in unknown:
            assert deliveries.counts[mid] == 1  # first delivery only, never redelivered
            letter = dead.get(mid)
            assert letter is not None and letter.headers["x-error-class"] == "UnknownEventType"
            assert letter.headers["x-disposition"] == "permanent"
            assert why[mid] in str(letter.headers["x-error-message"])
    for qid in qids:
        assert (feed_row(db, qid) or {}).get("title") == "What is a prime number?"
    assert not inbox_ids(db, [uuid.UUID(mid) for mid in unknown])


async def test_exception_from_subscriber_code_is_retried_then_dead_lettered(
    settings: Settings, db: Engine
) -> None:
    """A projection raising TypeError on one event: that event is retried (unknown error)
    and then dead-lettered; the other events of its batches are applied; no exit."""
    poisoned: set[uuid.UUID] = set()

    async def apply(conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
        for event in events:
            if event.envelope.id in poisoned:
                raise TypeError(f"no projection for {event.envelope.id}")

    toy = toy_subscriber({("question.created", 1): Projection(apply)})
    bad, good = question_event(), question_event()
    poisoned.add(bad.id)
    fast = {"retry_delays": "0.2", "unknown_error_retries": 1, "consumer_batch_wait_ms": 300}
    async with (
        broker(settings) as channel,
        running_consumer(settings, toy, **fast) as deliveries,
        dead_queue(settings, toy) as dead,
    ):
        for event in (bad, good):
            await channel.default_exchange.publish(envelope_message(event), toy.queue)
        letter = await poll("the dead letter", lambda: dead.get(str(bad.id)))
        assert inbox_ids(db, [good.id], toy.name) == {good.id}
        assert deliveries.counts[str(bad.id)] == 2  # first delivery + one retry
        assert letter.headers["x-error-class"] == "TypeError"
        assert letter.headers["x-disposition"] == "unknown"
        assert letter.headers["x-attempts"] == 2
        # Still consuming after the failures.
        after = question_event()
        await channel.default_exchange.publish(envelope_message(after), toy.queue)
        await poll("event after the failure", lambda: inbox_ids(db, [after.id], toy.name))
    assert not inbox_ids(db, [bad.id], toy.name)
