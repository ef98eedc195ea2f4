"""The two writes: a question or an answer, its outbox event, one transaction.

The business row, the outbox row and the idempotency key (when given) commit together
or not at all (guarantee 1). The business row and its outbox row travel to the
database in one statement (see ``outbox.uow``), so the outbox adds no round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError

from api.idempotency import IdempotentRequest, claim
from api.metrics import ApiMetrics
from api.schemas import AnswerIn, AnswerOut, QuestionIn, QuestionOut
from outbox.errors import NotFound
from outbox.events import AnswerCreatedV1, Envelope, QuestionCreatedV1, new_envelope
from outbox.models import Answer, Question
from outbox.settings import Settings
from outbox.uow import UnitOfWork

FOREIGN_KEY_VIOLATION = "23503"
QUESTIONS: Table = Question.__table__  # type: ignore[assignment]
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
AGGREGATE = "question"  # answers belong to their question: one ordering key per question


@dataclass(frozen=True)
class WriteResult:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def _emit(uow: UnitOfWork, settings: Settings, metrics: ApiMetrics, envelope: Envelope) -> None:
    """Write the event to the outbox. The benchmark switch lives here and nowhere else."""
    if settings.bench_disable_outbox:
        return  # benchmark only: breaks guarantee 1; qa-api warns at start-up
    uow.add_event(envelope)
    metrics.events.labels(envelope.type).inc()


async def _replay(
    uow: UnitOfWork, author: str, idempotent: IdempotentRequest | None, body: dict[str, Any]
) -> WriteResult | None:
    """Claim the idempotency key in this transaction, or return the stored result."""
    if idempotent is None:
        return None
    stored = await claim(uow.session, author, idempotent, 201, body)
    if stored is None:
        return None
    return WriteResult(stored.status_code, stored.body, replayed=True)


async def create_question(
    uow: UnitOfWork,
    settings: Settings,
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
        if (replay := await _replay(uow, author, idempotent, body)) is not None:
            return replay
        uow.insert(QUESTIONS, out.model_dump())
        event = QuestionCreatedV1(
            question_id=out.id,
            title=out.title,
            subject=out.subject,
            grade=out.grade,
            author=author,
            created_at=out.created_at,
        )
        _emit(uow, settings, metrics, new_envelope("question.created", AGGREGATE, out.id, event))
        await uow.commit()
    return WriteResult(201, body)


async def create_answer(
    uow: UnitOfWork,
    settings: Settings,
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
        if (replay := await _replay(uow, author, idempotent, body)) is not None:
            return replay
        uow.insert(ANSWERS, out.model_dump())
        event = AnswerCreatedV1(
            answer_id=out.id, question_id=question_id, author=author, created_at=out.created_at
        )
        _emit(uow, settings, metrics, new_envelope("answer.created", AGGREGATE, question_id, event))
        try:
            # The foreign key answers "does the question exist?" without a SELECT first.
            await uow.commit()
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION:
                raise NotFound(f"question {question_id} not found") from exc
            raise
    return WriteResult(201, body)
