"""The creating writes: a question or an answer, its outbox event, one transaction.

The business row, the outbox row and the idempotency key (when given) commit together
or not at all (guarantee 1). The business row and its outbox row travel to the
database in one statement (see ``outbox.uow``), so the outbox adds no round trip.

Every event of a question (its creation, edits, answers) gets the next number of the
question's ``last_sequence``, taken under the question's row lock in the same
transaction: the envelope ``sequence`` subscribers order by.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, update

from api.idempotency import IdempotentRequest, claim, confirm_replicated
from api.metrics import ApiMetrics
from api.schemas import AnswerIn, AnswerOut, QuestionIn, QuestionOut
from outbox.errors import NotFound
from outbox.events import (
    AnswerCreatedV2,
    Envelope,
    QuestionCreatedV1,
    QuestionState,
    new_envelope,
)
from outbox.models import Answer, Question
from outbox.uow import UnitOfWork

QUESTIONS: Table = Question.__table__  # type: ignore[assignment]
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
AGGREGATE = "question"  # answers belong to their question: one ordering key per question

# One statement answers "does the question exist?", takes the next sequence number under
# the row lock and reads the state answer.created carries. Built once (bind parameter):
# the statement and its cache key are not rebuilt per request.
_NEXT_SEQUENCE = (
    update(QUESTIONS)
    .where(QUESTIONS.c.id == bindparam("question_id"))
    .values(last_sequence=QUESTIONS.c.last_sequence + 1)
    .returning(
        QUESTIONS.c.title,
        QUESTIONS.c.subject,
        QUESTIONS.c.grade,
        QUESTIONS.c.last_sequence,
    )
)


@dataclass(frozen=True)
class WriteResult:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def emit(uow: UnitOfWork, metrics: ApiMetrics, envelope: Envelope) -> None:
    """Write the event to the outbox (in the unit of work's transaction)."""
    uow.add_event(envelope)
    metrics.events.labels(envelope.type).inc()


async def replay_or_claim(
    uow: UnitOfWork,
    author: str,
    idempotent: IdempotentRequest | None,
    body: dict[str, Any],
    status_code: int = 201,
) -> WriteResult | None:
    """Claim the idempotency key in this transaction, or return the stored result."""
    if idempotent is None:
        return None
    stored = await claim(uow.session, author, idempotent, status_code, body)
    if stored is None:
        return None
    # Not before the original write is known to be replicated (NotReplicated -> 503).
    await confirm_replicated(uow.session, author)
    await uow.commit()
    return WriteResult(stored.status_code, stored.body, replayed=True)


async def create_question(
    uow: UnitOfWork,
    metrics: ApiMetrics,
    author: str,
    data: QuestionIn,
    idempotent: IdempotentRequest | None,
) -> WriteResult:
    out = QuestionOut(
        id=uuid.uuid4(), author=author, created_at=datetime.now(UTC), **data.model_dump()
    )
    body = out.model_dump(mode="json")
    async with uow:
        if (replay := await replay_or_claim(uow, author, idempotent, body)) is not None:
            return replay
        uow.insert(QUESTIONS, {**out.model_dump(), "last_sequence": 1})
        event = QuestionCreatedV1(
            question_id=out.id,
            title=out.title,
            subject=out.subject,
            grade=out.grade,
            author=author,
            created_at=out.created_at,
        )
        envelope = new_envelope("question.created", AGGREGATE, out.id, event, sequence=1)
        emit(uow, metrics, envelope)
        await uow.commit()
    return WriteResult(201, body)


async def create_answer(
    uow: UnitOfWork,
    metrics: ApiMetrics,
    author: str,
    question_id: uuid.UUID,
    data: AnswerIn,
    idempotent: IdempotentRequest | None,
) -> WriteResult:
    out = AnswerOut(
        id=uuid.uuid4(),
        question_id=question_id,
        body=data.body,
        author=author,
        created_at=datetime.now(UTC),
    )
    body = out.model_dump(mode="json")
    async with uow:
        if (replay := await replay_or_claim(uow, author, idempotent, body)) is not None:
            return replay
        question = await uow.begin_with(_NEXT_SEQUENCE, {"question_id": question_id})
        if question is None:
            raise NotFound(f"question {question_id} not found")
        uow.insert(ANSWERS, out.model_dump())
        event = AnswerCreatedV2(
            answer_id=out.id,
            question=QuestionState(
                id=question_id, title=question.title, subject=question.subject, grade=question.grade
            ),
            author=author,
            created_at=out.created_at,
        )
        envelope = new_envelope(
            "answer.created", AGGREGATE, question_id, event, 2, sequence=question.last_sequence
        )
        emit(uow, metrics, envelope)
        await uow.commit()
    return WriteResult(201, body)
