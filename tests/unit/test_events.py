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


def test_unknown_fields_are_ignored_but_known_ones_still_validated() -> None:
    """Tolerant reader: an additive change (a new field) keeps the version."""
    envelope = _question_body(trace="abc", sequence=3)
    envelope["data"]["language"] = "en"  # type: ignore[index]
    decoded = decode(orjson.dumps(envelope))
    assert decoded.envelope.sequence == 3
    assert "language" not in decoded.data.model_dump()
    envelope["data"]["grade"] = 13  # type: ignore[index]
    with pytest.raises(SchemaViolation):
        decode(orjson.dumps(envelope))


@pytest.mark.parametrize("sequence", [0, -1, "two", 2**63])
def test_a_bad_sequence_is_a_schema_violation(sequence: object) -> None:
    with pytest.raises(SchemaViolation):
        decode(orjson.dumps(_question_body(sequence=sequence)))


def test_events_without_a_sequence_still_decode() -> None:
    envelope = _question_body()
    del envelope["sequence"]
    assert decode(orjson.dumps(envelope)).envelope.sequence is None


def test_new_envelope_refuses_data_of_another_type_or_version() -> None:
    data = AnswerCreatedV1(
        answer_id=uuid.uuid4(), question_id=uuid.uuid4(), author="bo", created_at=datetime.now(UTC)
    )
    with pytest.raises(ValueError, match="not the schema"):
        new_envelope("answer.created", "question", data.question_id, data, 2)
    with pytest.raises(ValueError, match="not the schema"):
        new_envelope("question.created", "question", data.question_id, data)
