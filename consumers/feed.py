"""The feed projection: ``question.created`` / ``question.edited`` / ``answer.created``
-> ``feed.questions``.

Each applied event writes its inbox row (``feed.inbox``, consumer ``feed``, keyed by the
event id) in the same transaction as its effect on the read model (guarantee 4). A whole
batch is applied by ONE statement: the inbox insert (``ON CONFLICT DO NOTHING
RETURNING``) decides which events are new, and only those reach the upsert. The final
row does not depend on delivery order:

* title, subject and grade come from the state-carrying event with the highest envelope
  ``sequence`` (``question.created``, ``question.edited``, ``answer.created`` v2), kept in
  ``state_sequence``: last writer by sequence, never by arrival. Events from before
  sequences existed count as sequence 0;
* ``created_at`` is set by ``question.created`` only; a row created first by another
  event stays hidden by the API until it arrives;
* ``answer_count`` is a commutative increment, guarded by the inbox;
* ``last_answer_at`` is ``greatest(...)`` of what is stored and what arrives.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
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

CONSUMER_NAME = "feed"
ACCEPTS = frozenset(
    {
        ("question.created", 1),
        ("question.edited", 1),
        ("answer.created", 1),
        ("answer.created", 2),
    }
)
"""The (type, version) pairs the feed handles; anything else is dead-lettered."""


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One event's contribution to one feed row."""

    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    question_id: uuid.UUID
    title: str | None = None
    subject: str | None = None
    grade: int | None = None
    state_sequence: int | None = None  # set when title/subject/grade are set
    created_at: datetime | None = None
    answered_at: datetime | None = None


def change_of(event: DecodedEvent) -> FeedChange:
    """What ``event`` does to the feed (one of the :data:`ACCEPTS` versions)."""
    env, data = event.envelope, event.data
    sequence = env.sequence or 0
    if isinstance(data, QuestionCreatedV1):
        return FeedChange(
            env.id,
            env.type,
            env.occurred_at,
            data.question_id,
            title=data.title,
            subject=data.subject,
            grade=data.grade,
            state_sequence=sequence,
            created_at=data.created_at,
        )
    if isinstance(data, QuestionEditedV1):
        return FeedChange(
            env.id,
            env.type,
            env.occurred_at,
            data.question_id,
            title=data.title,
            subject=data.subject,
            grade=data.grade,
            state_sequence=sequence,
        )
    if isinstance(data, AnswerCreatedV2):
        question = data.question
        return FeedChange(
            env.id,
            env.type,
            env.occurred_at,
            question.id,
            title=question.title,
            subject=question.subject,
            grade=question.grade,
            state_sequence=sequence,
            answered_at=data.created_at,
        )
    if isinstance(data, AnswerCreatedV1):
        return FeedChange(
            env.id, env.type, env.occurred_at, data.question_id, answered_at=data.created_at
        )
    # decode() only returns registered schemas; a new one must be handled here first.
    raise TypeError(f"feed has no projection for {env.type!r} v{env.version}")


# One round trip for the whole batch. Data-modifying CTEs always run to completion, and
# the GROUP BY consumes all of ``fresh`` first, so the inbox rows are written before any
# feed row is locked. Both inserts go in key order so two consumers cannot deadlock.
_APPLY = text(
    """
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:event_ids AS uuid[]), CAST(:event_types AS text[]), CAST(:question_ids AS uuid[]),
        CAST(:titles AS text[]), CAST(:subjects AS text[]), CAST(:grades AS smallint[]),
        CAST(:state_sequences AS bigint[]),
        CAST(:created_ats AS timestamptz[]), CAST(:answered_ats AS timestamptz[])
    ) AS t(event_id, event_type, question_id, title, subject, grade, state_sequence,
           created_at, answered_at)
),
fresh AS (
    INSERT INTO feed.inbox (consumer, event_id, event_type)
    SELECT :consumer, event_id, event_type FROM incoming ORDER BY event_id
    ON CONFLICT DO NOTHING
    RETURNING event_id
),
merged AS (
    SELECT i.question_id,
           (array_agg(i.title ORDER BY i.state_sequence DESC, i.event_id)
               FILTER (WHERE i.state_sequence IS NOT NULL))[1] AS title,
           (array_agg(i.subject ORDER BY i.state_sequence DESC, i.event_id)
               FILTER (WHERE i.state_sequence IS NOT NULL))[1] AS subject,
           (array_agg(i.grade ORDER BY i.state_sequence DESC, i.event_id)
               FILTER (WHERE i.state_sequence IS NOT NULL))[1] AS grade,
           max(i.state_sequence) AS state_sequence,
           max(i.created_at) AS created_at,
           count(i.answered_at) AS answers, max(i.answered_at) AS last_answer_at
    FROM incoming AS i JOIN fresh AS f ON f.event_id = i.event_id
    GROUP BY i.question_id
),
upserted AS (
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
    RETURNING 1
)
SELECT event_id FROM fresh
"""
)


def unique_changes(changes: Iterable[FeedChange]) -> list[FeedChange]:
    """The first change per event id: a duplicate inside one batch must count once."""
    seen: dict[uuid.UUID, FeedChange] = {}
    for change in changes:
        seen.setdefault(change.event_id, change)
    return list(seen.values())


async def apply_changes(
    conn: AsyncConnection, changes: Sequence[FeedChange], consumer: str = CONSUMER_NAME
) -> set[uuid.UUID]:
    """Apply ``changes`` in the caller's transaction; return the ids applied now.

    Ids not returned were already in the inbox (duplicates) and changed nothing.
    """
    batch = unique_changes(changes)
    if not batch:
        return set()
    params = {
        "consumer": consumer,
        "event_ids": [c.event_id for c in batch],
        "event_types": [c.event_type for c in batch],
        "question_ids": [c.question_id for c in batch],
        "titles": [c.title for c in batch],
        "subjects": [c.subject for c in batch],
        "grades": [c.grade for c in batch],
        "state_sequences": [c.state_sequence for c in batch],
        "created_ats": [c.created_at for c in batch],
        "answered_ats": [c.answered_at for c in batch],
    }
    result = await conn.execute(_APPLY, params)
    return {row[0] for row in result}
