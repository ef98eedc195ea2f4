"""Permanent failures: dead-lettered on the first delivery, byte for byte, never looping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from outbox.settings import Settings
from tests.integration.test_feed_support import (
    amqp_message,
    answer_event,
    broker,
    dead_letters,
    feed_row,
    inbox_ids,
    poll,
    publish,
    publish_events,
    question_event,
    running_consumer,
)


def _envelope(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = orjson.loads(question_event().to_bytes())
    raw.update(changes)
    return raw


def _with_data(**changes: Any) -> dict[str, Any]:
    raw = _envelope()
    raw["data"] = {**raw["data"], **changes}
    return raw


# (kind, body, routing key, acceptable error classes)
POISON: list[tuple[str, bytes, str, set[str]]] = [
    ("not-utf8", b'{"id": "\xff\xfe"}', "question.created", {"UndecodableBody"}),
    ("not-json", b'{"id": oops', "question.created", {"UndecodableBody"}),
    ("not-an-object", b"[1, 2, 3]", "answer.created", {"SchemaViolation"}),
    ("empty", b"", "answer.created", {"UndecodableBody"}),
    (
        "envelope-missing-field",
        orjson.dumps({"id": str(uuid.uuid4())}),
        "question.created",
        {"SchemaViolation"},
    ),
    ("data-invalid", orjson.dumps(_with_data(grade=13)), "question.created", {"SchemaViolation"}),
    (
        "nul-in-title",
        orjson.dumps(_with_data(title="a\x00b")),
        "question.created",
        {"SchemaViolation"},
    ),
    # A lone surrogate, escaped in JSON: some parsers reject it, the schema does otherwise.
    (
        "lone-surrogate",
        orjson.dumps(_with_data(title="@@")).replace(b"@@", b"\\ud800"),
        "question.created",
        {"SchemaViolation", "UndecodableBody"},
    ),
    # Bindings are exact, so an unknown type reaches feed.events only under a bound key
    # (or by a direct publish); it must still be dead-lettered, not crash the consumer.
    (
        "unknown-type",
        orjson.dumps(_envelope(type="question.deleted")),
        "question.created",
        {"UnknownEventType"},
    ),
    (
        "unknown-version",
        orjson.dumps(_envelope(version=2)),
        "question.created",
        {"UnknownEventType"},
    ),
]


@pytest.mark.parametrize(
    ("kind", "body", "routing_key", "classes"), POISON, ids=[p[0] for p in POISON]
)
async def test_permanent_failure_is_dead_lettered_once_with_its_original_bytes_and_why(
    settings: Settings, db: Engine, kind: str, body: bytes, routing_key: str, classes: set[str]
) -> None:
    message_id = str(uuid.uuid4())
    original = amqp_message(
        body,
        message_id=message_id,
        type_="question.created",
        headers={"x-test-kind": kind, "x-number": 42, "x-bytes": bytearray(b"\x00\x01")},
    )
    follower = question_event()
    async with (
        broker(settings) as channel,
        dead_letters(settings) as dead,
        running_consumer(settings) as deliveries,
    ):
        await publish(channel, original, routing_key)
        await publish_events(channel, [follower])
        letter = await poll("the dead letter", lambda: dead.get(message_id))
        # The consumer goes on serving valid events.
        await poll("valid event after the poison", lambda: inbox_ids(db, [follower.id]))
        assert deliveries.counts[message_id] == 1
        assert len(dead.by_id[message_id]) == 1

    assert letter.body == body
    assert (letter.message_id, letter.type, letter.content_type) == (
        message_id,
        "question.created",
        "application/json",
    )
    assert letter.timestamp == original.timestamp.replace(microsecond=0)  # AMQP: seconds
    assert letter.delivery_mode == original.delivery_mode
    h = letter.headers
    assert (h["x-test-kind"], h["x-number"], bytes(h["x-bytes"])) == (kind, 42, b"\x00\x01")
    assert h["x-error-class"] in classes
    assert h["x-disposition"] == "permanent"
    assert h["x-attempts"] == 1
    assert h["x-failed-queue"] == "feed.events"
    assert h["x-original-routing-key"] == routing_key
    assert uuid.UUID(str(h["x-dead-letter-id"]))
    assert datetime.fromisoformat(str(h["x-first-failed-at"])).tzinfo is not None
    assert str(h["x-error-class"]) in str(h["x-traceback"])
    assert str(h["x-error-message"])
    # First delivery: the quorum queue never had to redeliver it.
    assert not h.get("x-delivery-count")


async def test_burst_of_poison_interleaved_with_valid_events(
    settings: Settings, db: Engine
) -> None:
    """1,000 poison messages among 100 valid events: every valid event applied once, every
    poison message dead-lettered once, each delivered exactly once."""
    questions = [question_event() for _ in range(50)]
    answers = [answer_event(uuid.UUID(q.data["question_id"])) for q in questions]
    valid = questions + answers
    poison_ids = [str(uuid.uuid4()) for _ in range(1000)]
    messages = []
    for i, poison_id in enumerate(poison_ids):
        body = b"\xff" if i % 2 else b"{broken json"
        messages.append((amqp_message(body, message_id=poison_id), "answer.created"))
        if i % 10 == 0:
            envelope = valid[i // 10]
            messages.append(
                (amqp_message(envelope.to_bytes(), message_id=str(envelope.id)), envelope.type)
            )
    async with (
        broker(settings) as channel,
        dead_letters(settings) as dead,
        running_consumer(settings) as deliveries,
    ):
        for start in range(0, len(messages), 100):
            await asyncio.gather(
                *(publish(channel, m, rk) for m, rk in messages[start : start + 100])
            )
        await poll("all poison dead-lettered", lambda: all(p in dead.by_id for p in poison_ids))
        ids = {e.id for e in valid}
        await poll("all valid applied", lambda: inbox_ids(db, ids) == ids)
        sentinel = question_event()
        await publish_events(channel, [sentinel])
        await poll("sentinel applied", lambda: inbox_ids(db, [sentinel.id]))
        assert all(deliveries.counts[p] == 1 for p in poison_ids)
        assert all(deliveries.counts[str(e.id)] == 1 for e in valid)
        assert all(len(dead.by_id[p]) == 1 for p in poison_ids)
    for question in questions:
        row = feed_row(db, uuid.UUID(question.data["question_id"]))
        assert row is not None and row["answer_count"] == 1 and row["title"]
