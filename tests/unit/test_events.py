"""The envelope codec: what decodes, and which permanent error each bad body raises."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from outbox.errors import SchemaViolation, UndecodableBody, UnknownEventType
from outbox.events import AnswerCreatedV1, QuestionCreatedV1, decode, new_envelope


def _question_body(**overrides: object) -> dict[str, object]:
    qid = uuid.uuid4()
    data = QuestionCreatedV1(
        question_id=qid,
        title="Why?",
        subject="physics",
        grade=7,
        author="ann",
        created_at=datetime.now(UTC),
    )
    envelope = orjson.loads(new_envelope("question.created", "question", qid, data).to_bytes())
    envelope.update(overrides)
    return envelope


def test_round_trip_keeps_id_and_data() -> None:
    qid = uuid.uuid4()
    data = AnswerCreatedV1(
        answer_id=uuid.uuid4(), question_id=qid, author="bo", created_at=datetime.now(UTC)
    )
    envelope = new_envelope("answer.created", "question", qid, data)
    decoded = decode(envelope.to_bytes())
    assert decoded.envelope.id == envelope.id
    assert decoded.data == data


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xff\xfe", UndecodableBody),
        (b"{not json", UndecodableBody),
        (b'"\\ud800"', UndecodableBody),
        (b"[1, 2]", SchemaViolation),
        (orjson.dumps(_question_body(version="one")), SchemaViolation),
        (orjson.dumps(_question_body(extra=1)), SchemaViolation),
        (orjson.dumps(_question_body(occurred_at="2026-01-01T00:00:00")), SchemaViolation),
        (orjson.dumps(_question_body(type="question.deleted")), UnknownEventType),
        (orjson.dumps(_question_body(version=2)), UnknownEventType),
        (orjson.dumps(_question_body(data={"title": "x"})), SchemaViolation),
    ],
)
def test_bad_bodies_raise_a_permanent_error(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(body)


@pytest.mark.parametrize("title", ["a\x00b", "\ud800", ""])
def test_hostile_strings_in_data_are_schema_violations(title: str) -> None:
    envelope = _question_body()
    envelope["data"]["title"] = title  # type: ignore[index]
    body = orjson.dumps(envelope) if "\ud800" not in title else _with_lone_surrogate(envelope)
    with pytest.raises((SchemaViolation, UndecodableBody)):
        decode(body)


def _with_lone_surrogate(envelope: dict[str, object]) -> bytes:
    envelope["data"]["title"] = "PLACEHOLDER"  # type: ignore[index]
    return orjson.dumps(envelope).replace(b"PLACEHOLDER", b"\\ud800")
