"""The feed subscriber: ``question.created`` / ``question.edited`` / ``answer.created``
-> ``feed.questions``.

A projection: the runtime applies a batch in one transaction on the feed database
(``QA_FEED_DATABASE_URL``) together with its inbox rows, and hands :func:`apply` only the
events the inbox had not seen. The whole batch is ONE statement, and the final row does
not depend on delivery order:

* title, subject and grade come from the state-carrying event with the highest envelope
  ``sequence`` (``question.created``, ``question.edited``, ``answer.created`` v2), kept in
  ``state_sequence``: last writer by sequence, never by arrival. Events from before
  sequences existed count as sequence 0;
* ``created_at`` is set by ``question.created`` only; a row created first by another
  event stays hidden by the API until it arrives;
* ``answer_count`` is a commutative increment, guarded by the inbox;
* ``last_answer_at`` is ``greatest(...)`` of what is stored and what arrives.

Nothing here commits: the runtime owns the transaction. This module imports only
``outbox``; it is registered as entry point ``feed`` in group ``qa.subscribers``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from outbox.events import (
    AnswerCreatedV1,
    AnswerCreatedV2,
    DecodedEvent,
    QuestionCreatedV1,
    QuestionEditedV1,
)
from outbox.subscribers import EventKey, Projection, Subscriber


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One event's contribution to one feed row."""

    question_id: uuid.UUID
    title: str | None = None
    subject: str | None = None
    grade: int | None = None
    state_sequence: int | None = None  # set when title/subject/grade are set
    created_at: datetime | None = None
    answered_at: datetime | None = None


def _question_created(data: object, sequence: int) -> FeedChange:
    assert isinstance(data, QuestionCreatedV1)
    return FeedChange(
        data.question_id,
        title=data.title,
        subject=data.subject,
        grade=data.grade,
        state_sequence=sequence,
        created_at=data.created_at,
    )


def _question_edited(data: object, sequence: int) -> FeedChange:
    assert isinstance(data, QuestionEditedV1)
    return FeedChange(
        data.question_id,
        title=data.title,
        subject=data.subject,
        grade=data.grade,
        state_sequence=sequence,
    )


def _answer_created_v2(data: object, sequence: int) -> FeedChange:
    assert isinstance(data, AnswerCreatedV2)
    question = data.question
    return FeedChange(
        question.id,
        title=question.title,
        subject=question.subject,
        grade=question.grade,
        state_sequence=sequence,
        answered_at=data.created_at,
    )


def _answer_created_v1(data: object, sequence: int) -> FeedChange:
    assert isinstance(data, AnswerCreatedV1)
    return FeedChange(data.question_id, answered_at=data.created_at)


# What each accepted (type, version) does to the feed: the subscriber's declaration.
CHANGES: dict[EventKey, Callable[[object, int], FeedChange]] = {
    ("question.created", 1): _question_created,
    ("question.edited", 1): _question_edited,
    ("answer.created", 1): _answer_created_v1,
    ("answer.created", 2): _answer_created_v2,
}
ACCEPTS = frozenset(CHANGES)
"""The (type, version) pairs the feed handles; anything else is dead-lettered."""


def change_of(event: DecodedEvent) -> FeedChange:
    """What ``event`` does to the feed (KeyError for an event the feed does not accept)."""
    env = event.envelope
    return CHANGES[(env.type, env.version)](event.data, env.sequence or 0)


# One round trip for the whole batch; rows go in key order so two consumers cannot
# deadlock. Only new events arrive here (the runtime's inbox insert decided).
_APPLY = text(
    """
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:event_ids AS uuid[]), CAST(:question_ids AS uuid[]),
        CAST(:titles AS text[]), CAST(:subjects AS text[]), CAST(:grades AS smallint[]),
        CAST(:state_sequences AS bigint[]),
        CAST(:created_ats AS timestamptz[]), CAST(:answered_ats AS timestamptz[])
    ) AS t(event_id, question_id, title, subject, grade, state_sequence, created_at,
           answered_at)
),
merged AS (
    SELECT question_id,
           (array_agg(title ORDER BY state_sequence DESC, event_id)
               FILTER (WHERE state_sequence IS NOT NULL))[1] AS title,
           (array_agg(subject ORDER BY state_sequence DESC, event_id)
               FILTER (WHERE state_sequence IS NOT NULL))[1] AS subject,
           (array_agg(grade ORDER BY state_sequence DESC, event_id)
               FILTER (WHERE state_sequence IS NOT NULL))[1] AS grade,
           max(state_sequence) AS state_sequence,
           max(created_at) AS created_at,
           count(answered_at) AS answers, max(answered_at) AS last_answer_at
    FROM incoming GROUP BY question_id
)
INSERT INTO feed.questions AS q
    (question_id, title, subject, grade, state_sequence, created_at, answer_count,
     last_answer_at)
SELECT question_id, title, subject, grade, state_sequence, created_at, answers,
       last_answer_at
FROM merged ORDER BY question_id
ON CONFLICT (question_id) DO UPDATE SET
    -- Last writer by sequence: the incoming state replaces the stored one only when
    -- its sequence is higher (a stale or equal one changes nothing).
    title = CASE WHEN excluded.state_sequence > coalesce(q.state_sequence, -1)
                 THEN excluded.title ELSE q.title END,
    subject = CASE WHEN excluded.state_sequence > coalesce(q.state_sequence, -1)
                   THEN excluded.subject ELSE q.subject END,
    grade = CASE WHEN excluded.state_sequence > coalesce(q.state_sequence, -1)
                 THEN excluded.grade ELSE q.grade END,
    state_sequence = greatest(q.state_sequence, excluded.state_sequence),
    created_at = coalesce(excluded.created_at, q.created_at),
    answer_count = q.answer_count + excluded.answer_count,
    last_answer_at = greatest(q.last_answer_at, excluded.last_answer_at),
    updated_at = now()
"""
)


async def apply(conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
    """Apply new ``events`` (each exactly once: the runtime's inbox guarantees it)."""
    if not events:
        return
    changes = [change_of(event) for event in events]
    await conn.execute(
        _APPLY,
        {
            "event_ids": [event.envelope.id for event in events],
            "question_ids": [c.question_id for c in changes],
            "titles": [c.title for c in changes],
            "subjects": [c.subject for c in changes],
            "grades": [c.grade for c in changes],
            "state_sequences": [c.state_sequence for c in changes],
            "created_ats": [c.created_at for c in changes],
            "answered_ats": [c.answered_at for c in changes],
        },
    )


_PROJECTION = Projection(apply)

SUBSCRIBER = Subscriber(
    name="feed",
    handlers={key: _PROJECTION for key in CHANGES},
    database_setting="feed_database_url",
    # Before the subscriber runtime the feed queue was bound by pattern.
    retired_bindings=("question.*", "answer.*"),
)
