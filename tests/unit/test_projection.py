"""Mapping decoded events to feed changes, and retry/dead-letter copies (no services)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiormq.abc
import pytest
from aio_pika.message import IncomingMessage
from pamqp import commands
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode
from pamqp.header import ContentHeader

from consumers.feed import SUBSCRIBER as FEED
from consumers.feed import change_of
from consumers.runtime.disposition import classify
from consumers.runtime.failed_messages import (
    H_ORIGINAL_ROUTING_KEY,
    MAX_ERROR_MESSAGE,
    MAX_TRACEBACK,
    attempts_of,
    dead_letter_message,
    retry_message,
)
from outbox.errors import SchemaViolation
from outbox.events import AnswerCreatedV1, QuestionCreatedV1, decode, new_envelope

QID = uuid.uuid4()
WHEN = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


def _question() -> bytes:
    data = QuestionCreatedV1(
        question_id=QID, title="T", subject="math", grade=3, author="a", created_at=WHEN
    )
    return new_envelope("question.created", "question", QID, data).to_bytes()


def _answer() -> bytes:
    aid = uuid.uuid4()
    data = AnswerCreatedV1(answer_id=aid, question_id=QID, author="b", created_at=WHEN)
    return new_envelope("answer.created", "answer", aid, data).to_bytes()


def test_question_sets_question_fields_only() -> None:
    change = change_of(decode(_question()))
    assert (change.question_id, change.title, change.subject, change.grade) == (QID, "T", "math", 3)
    assert change.created_at == WHEN and change.answered_at is None


def test_answer_sets_only_its_time() -> None:
    change = change_of(decode(_answer()))
    assert change.question_id == QID and change.answered_at == WHEN
    assert (change.title, change.subject, change.grade, change.created_at) == (None,) * 4


def test_feed_declaration_derives_exact_bindings_and_names() -> None:
    assert FEED.bindings == ("answer.created", "question.created", "question.edited")
    assert (FEED.queue, FEED.dead_queue) == ("feed.events", "feed.dead")
    assert FEED.accepts("question.created", 1) and not FEED.accepts("question.created", 2)


class _Channel:
    is_closed = False


def _incoming(
    body: bytes, headers: dict[str, Any] | None = None, routing_key: str = "question.created"
) -> IncomingMessage:
    props = commands.Basic.Properties(
        content_type="application/json",
        headers=headers or {},
        delivery_mode=2,
        message_id="m-1",
        timestamp=WHEN,
        message_type="question.created",
        expiration="60000",
        user_id="someone",
    )
    delivered = aiormq.abc.DeliveredMessage(
        delivery=commands.Basic.Deliver(
            consumer_tag="c", delivery_tag=7, exchange="qa.events", routing_key=routing_key
        ),
        header=ContentHeader(properties=props, body_size=len(body)),
        body=body,
        channel=_Channel(),  # type: ignore[arg-type]
    )
    return IncomingMessage(delivered)


def test_dead_letter_keeps_body_properties_and_headers_and_says_why() -> None:
    body = b"\xff\xfe not utf-8"
    incoming = _incoming(body, {"x-custom": "kept", "n": 5})
    exc = SchemaViolation("x" * 5000)
    copy, routing_key = dead_letter_message("feed", incoming, classify(exc, 0, [1.0], 3), exc)
    assert routing_key == "feed.dead"
    assert copy.body == body
    assert (copy.message_id, copy.type, copy.content_type) == (
        "m-1",
        "question.created",
        "application/json",
    )
    assert copy.timestamp == incoming.timestamp
    assert copy.expiration is None and copy.user_id is None  # kept as headers instead
    h = copy.headers
    assert h["x-custom"] == "kept" and h["n"] == 5
    assert h["x-error-class"] == "SchemaViolation"
    assert len(h["x-error-message"]) == MAX_ERROR_MESSAGE
    assert h["x-disposition"] == "permanent"
    assert h["x-attempts"] == 1
    assert h["x-failed-queue"] == "feed.events"
    assert h[H_ORIGINAL_ROUTING_KEY] == "question.created"
    assert uuid.UUID(str(h["x-dead-letter-id"]))
    datetime.fromisoformat(str(h["x-first-failed-at"]))
    assert 0 < len(str(h["x-traceback"])) <= MAX_TRACEBACK
    assert h["x-original-user-id"] == "someone"


def test_retry_copy_goes_to_its_tier_and_keeps_the_first_routing_key_and_failure_time() -> None:
    first = "2024-01-01T00:00:00+00:00"
    incoming = _incoming(
        _question(),
        {"x-attempts": 1, H_ORIGINAL_ROUTING_KEY: "question.created", "x-first-failed-at": first},
        routing_key="feed.events",
    )
    exc = TimeoutError("db slow")
    copy, routing_key = retry_message(
        "feed", incoming, classify(exc, attempts_of(incoming), [1, 5], 3), exc
    )
    assert routing_key == "feed.retry.5000ms"
    assert copy.headers["x-attempts"] == 2
    assert copy.headers[H_ORIGINAL_ROUTING_KEY] == "question.created"
    assert copy.headers["x-first-failed-at"] == first
    assert copy.body == incoming.body


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("4", 4), (b"2", 2), ("junk", 0), (-1, 0), (True, 0), (None, 0), (10**9, 0)],
)
def test_unreadable_attempt_headers_count_as_zero(value: Any, expected: int) -> None:
    assert attempts_of(_incoming(b"{}", {"x-attempts": value})) == expected


def test_lone_surrogates_in_error_text_do_not_break_the_headers() -> None:
    exc = ValueError("bad \ud800 text")
    copy, _ = dead_letter_message("feed", _incoming(b"{}"), classify(exc, 5, [1.0], 0), exc)
    str(copy.headers["x-error-message"]).encode("utf-8")


def test_headers_pamqp_decodes_but_cannot_encode_are_made_encodable() -> None:
    # A non-UTF-8 long string arrives as bytes; pamqp encodes only bytearray.
    incoming = _incoming(b"{}", {"raw": b"\xff\xfe", "nested": {"list": [b"\x00"]}})
    exc = ValueError("x")
    copy, _ = dead_letter_message("feed", incoming, classify(exc, 5, [1.0], 0), exc)
    encoded = pamqp_encode.field_table(copy.headers)
    _, decoded = pamqp_decode.field_table(encoded)
    assert bytes(decoded["raw"]) == b"\xff\xfe"
    assert bytes(decoded["nested"]["list"][0]) == b"\x00"
