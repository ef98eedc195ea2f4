"""Question edits: the change and its ``question.edited`` event, one transaction.

The question row is locked first (``SELECT ... FOR UPDATE``), so concurrent edits and
answers of one question take distinct, increasing sequence numbers, and the state the
event carries is the state this transaction commits. Only the question's author may
edit it. A patch that changes nothing (every field already has the sent value) writes
nothing and emits nothing; it answers the current question.

With an ``Idempotency-Key`` the key is claimed after the lock, when the response is
known: a retry of an applied edit finds the stored response and changes nothing more.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import get_args

from sqlalchemy import select, update

from api.idempotency import IdempotentRequest
from api.metrics import ApiMetrics
from api.schemas import QuestionOut, QuestionPatch
from api.writes import AGGREGATE, QUESTIONS, WriteResult, emit, replay_or_claim
from outbox.errors import Forbidden, NotFound
from outbox.events import EditableField, QuestionEditedV1, new_envelope
from outbox.uow import UnitOfWork

_FIELD_ORDER: tuple[str, ...] = get_args(EditableField)


async def edit_question(
    uow: UnitOfWork,
    metrics: ApiMetrics,
    user: str,
    question_id: uuid.UUID,
    patch: QuestionPatch,
    idempotent: IdempotentRequest | None,
) -> WriteResult:
    async with uow:
        row = (
            await uow.session.execute(
                select(QUESTIONS).where(QUESTIONS.c.id == question_id).with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"question {question_id} not found")
        if row.author != user:
            raise Forbidden("only the question's author may edit it")
        current = QuestionOut.model_validate(row, from_attributes=True)
        changes = {k: v for k, v in patch.changes().items() if getattr(current, k) != v}
        edited = current.model_copy(update=changes)
        body = edited.model_dump(mode="json")
        if (replay := await replay_or_claim(uow, user, idempotent, body, 200)) is not None:
            return replay
        if changes:
            sequence = row.last_sequence + 1
            await uow.session.execute(
                update(QUESTIONS)
                .where(QUESTIONS.c.id == question_id)
                .values(**changes, last_sequence=sequence)
            )
            event = QuestionEditedV1(
                question_id=question_id,
                changed=[name for name in _FIELD_ORDER if name in changes],
                title=edited.title,
                subject=edited.subject,
                grade=edited.grade,
                edited_at=datetime.now(UTC),
            )
            envelope = new_envelope(
                "question.edited", AGGREGATE, question_id, event, sequence=sequence
            )
            emit(uow, metrics, envelope)
        await uow.commit()
    return WriteResult(200, body)
