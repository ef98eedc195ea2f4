"""The versioning policy in the decode path: declared versions, downcasters, dead letters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from outbox.errors import UnknownEventType
from outbox.events import (
    EVENT_SCHEMAS,
    AnswerCreatedV1,
    AnswerCreatedV2,
    QuestionState,
    decode,
    new_envelope,
)
from outbox.versions import DOWNCASTERS, decode_for

QID = uuid.uuid4()
V1_ONLY = {("answer.created", 1)}
BOTH = {("answer.created", 1), ("answer.created", 2)}


def _v2_body(**envelope_overrides: object) -> bytes:
    data = AnswerCreatedV2(
        answer_id=uuid.uuid4(),
        question=QuestionState(id=QID, title="Why?", subject="physics", grade=7),
        author="bo",
        created_at=datetime.now(UTC),
    )
    envelope = new_envelope("answer.created", "question", QID, data, 2, sequence=5)
    return envelope.model_copy(update=envelope_overrides).to_bytes()


def test_a_v1_subscriber_gets_v2_converted_to_v1() -> None:
    body = _v2_body()
    event = decode_for(body, V1_ONLY)
    original = decode(body)
    assert event.envelope.version == 1
    assert isinstance(event.data, AnswerCreatedV1)
    assert isinstance(original.data, AnswerCreatedV2)
    assert event.data.question_id == QID
    assert event.data.answer_id == original.data.answer_id
    # Everything but the version and data shape is the original's.
    assert event.envelope.id == original.envelope.id
    assert event.envelope.sequence == 5
    # The converted envelope is itself a valid v1 message.
    assert decode(event.envelope.to_bytes()).data == event.data


def test_a_subscriber_declaring_v2_gets_it_unchanged() -> None:
    body = _v2_body()
    assert decode_for(body, BOTH) == decode(body)


@pytest.mark.parametrize(
    ("body", "accepts"),
    [
        (_v2_body(version=3), BOTH),  # a future version nobody declared
        (_v2_body(type="answer.deleted"), BOTH),  # a type nobody declared
        (_v2_body(), {("question.created", 1)}),  # a type this subscriber does not take
    ],
)
def test_an_undeclared_version_is_a_permanent_error(
    body: bytes, accepts: set[tuple[str, int]]
) -> None:
    with pytest.raises(UnknownEventType):
        decode_for(body, accepts)


def test_v1_events_still_reach_a_subscriber_declaring_both() -> None:
    data = AnswerCreatedV1(
        answer_id=uuid.uuid4(), question_id=QID, author="b", created_at=datetime.now(UTC)
    )
    body = new_envelope("answer.created", "question", QID, data).to_bytes()
    assert decode_for(body, BOTH).data == data
    with pytest.raises(UnknownEventType):
        decode_for(body, {("answer.created", 2)})  # no upcaster: v1 lacks the question state


def test_every_downcaster_goes_from_a_registered_version_to_the_one_before() -> None:
    for event_type, version in DOWNCASTERS:
        assert (event_type, version) in EVENT_SCHEMAS
        assert (event_type, version - 1) in EVENT_SCHEMAS


def test_every_breaking_version_has_a_downcaster() -> None:
    """Policy: a new version of a type always ships the converter to the previous one."""
    for event_type, version in EVENT_SCHEMAS:
        if version > 1:
            assert (event_type, version) in DOWNCASTERS, f"{event_type} v{version}"


def test_converted_body_bytes_are_not_the_original() -> None:
    body = _v2_body()
    assert orjson.loads(decode_for(body, V1_ONLY).envelope.to_bytes())["data"].keys() == {
        "answer_id",
        "question_id",
        "author",
        "created_at",
    }
