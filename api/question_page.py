"""``GET /questions/{id}``: the question and one page of its answers, oldest first.

Answers are paged by keyset on ``(created_at, id)`` like the feed, so a question with
thousands of answers costs one bounded index range read per page (index
``ix_answers_question_id_created_at``), never all of them at once.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api import cursor as cursors
from api.schemas import AnswerOut, QuestionWithAnswers
from outbox.errors import NotFound
from outbox.models import Answer, Question

DEFAULT_ANSWERS = 50


async def question_page(
    session: AsyncSession,
    question_id: uuid.UUID,
    after: cursors.Position | None,
    limit: int,
) -> QuestionWithAnswers:
    """The question with up to ``limit`` answers after ``after``; 404 if unknown."""
    question = await session.get(Question, question_id)
    if question is None:
        raise NotFound(f"question {question_id} not found")
    query = select(Answer).where(Answer.question_id == question_id)
    if after is not None:
        query = query.where(tuple_(Answer.created_at, Answer.id) > (after.created_at, after.id))
    rows = list(
        await session.scalars(query.order_by(Answer.created_at, Answer.id).limit(limit + 1))
    )
    answers = [
        AnswerOut(
            id=a.id,
            question_id=a.question_id,
            body=a.body,
            author=a.author,
            created_at=a.created_at,
        )
        for a in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit and answers:
        last = answers[-1]
        next_cursor = cursors.encode(cursors.Position(last.created_at, last.id), "answers")
    return QuestionWithAnswers(
        id=question.id,
        title=question.title,
        body=question.body,
        subject=question.subject,
        grade=question.grade,
        author=question.author,
        created_at=question.created_at,
        answers=answers,
        next_cursor=next_cursor,
    )
