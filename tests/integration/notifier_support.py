"""Helpers shared by the notifier tests (integration and e2e). Holds no tests itself.

Every test uses fresh names and uuid4 ids, so rows of other tests in the shared database
and mails of other tests on the shared SMTP server never confuse it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.notifier.mail import message_id
from outbox.events import (
    AnswerCreatedV1,
    DecodedEvent,
    Envelope,
    QuestionCreatedV1,
    UserRegisteredV1,
    UserUpdatedV1,
    decode,
    new_envelope,
)
from tests.support.smtp_server import TestSmtpServer


@pytest.fixture(scope="module")
def smtp() -> Iterator[TestSmtpServer]:
    server = TestSmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def fresh_name(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def address(name: str) -> str:
    return f"{name}@example.test"


def user_event(
    name: str,
    email: str | None = "default",
    *,
    opted_out: bool = False,
    revision: int = 1,
) -> Envelope:
    schema = UserRegisteredV1 if revision == 1 else UserUpdatedV1
    data = schema(
        name=name,
        email=address(name) if email == "default" else email,
        opted_out=opted_out,
        revision=revision,
        changed_at=datetime.now(UTC),
    )
    kind = "user.registered" if revision == 1 else "user.updated"
    return new_envelope(kind, "user", name, data)


def question_event(author: str, title: str = "Why is the sky blue?", **kw: Any) -> Envelope:
    qid = kw.pop("question_id", None) or uuid.uuid4()
    data = QuestionCreatedV1(
        question_id=qid,
        title=title,
        subject="physics",
        grade=7,
        author=author,
        created_at=datetime.now(UTC),
    )
    return new_envelope("question.created", "question", qid, data)


def answer_event(question: Envelope, author: str, *, age: float = 0.0) -> Envelope:
    aid = uuid.uuid4()
    qid = uuid.UUID(question.data["question_id"])
    data = AnswerCreatedV1(
        answer_id=aid, question_id=qid, author=author, created_at=datetime.now(UTC)
    )
    envelope = new_envelope("answer.created", "question", qid, data)
    if age:
        envelope = envelope.model_copy(
            update={"occurred_at": envelope.occurred_at - timedelta(seconds=age)}
        )
    return envelope


def decoded(envelope: Envelope) -> DecodedEvent:
    """Through the wire format, as a subscriber receives it."""
    return decode(envelope.to_bytes())


def mail_id(envelope: Envelope) -> str:
    return message_id(envelope.id)


def answer_v2_event(question: Envelope, author: str, title: str) -> Envelope:
    """``answer.created`` v2: carries the question's state (here: ``title``) as it was."""
    from outbox.events import AnswerCreatedV2, QuestionState

    aid = uuid.uuid4()
    qid = uuid.UUID(question.data["question_id"])
    state = QuestionState(id=qid, title=title, subject="physics", grade=7)
    data = AnswerCreatedV2(
        answer_id=aid, question=state, author=author, created_at=datetime.now(UTC)
    )
    return new_envelope("answer.created", "question", qid, data, version=2)


def edited_event(question: Envelope, title: str) -> Envelope:
    from outbox.events import QuestionEditedV1

    qid = uuid.UUID(question.data["question_id"])
    data = QuestionEditedV1(
        question_id=qid,
        changed=["title"],
        title=title,
        subject="physics",
        grade=7,
        edited_at=datetime.now(UTC),
    )
    return new_envelope("question.edited", "question", qid, data)
