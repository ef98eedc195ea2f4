"""The notifier's copy of users and questions, and its outcome log (schema ``notifier``).

Built only from events, in any delivery order and with duplicates:

* a user row keeps the state with the highest ``revision`` (every ``user.*`` event
  carries the whole state);
* a question row keeps the title of the highest envelope ``sequence`` (last writer by
  sequence, never by arrival or clock; ``title_at``, the event's time, breaks ties) and
  the author once any event told it. A future title-changing event (``question.edited``)
  calls :func:`upsert_question` with its title and time and no author.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_UPSERT_USER = text(
    """
INSERT INTO notifier.users AS u (name, email, opted_out, revision)
VALUES (:name, :email, :opted_out, :revision)
ON CONFLICT (name) DO UPDATE SET
    email = excluded.email, opted_out = excluded.opted_out,
    revision = excluded.revision, updated_at = now()
WHERE u.revision < excluded.revision
"""
)

# A title only replaces one of a lower sequence (the event's per-question sequence; the
# event time only breaks ties between events from before sequences, all 0); the author,
# once known, never changes.
_UPSERT_QUESTION = text(
    """
INSERT INTO notifier.questions AS q (question_id, title, author, title_at, title_sequence)
VALUES (:question_id, coalesce(:title, ''), :author,
        CASE WHEN :title IS NULL THEN '-infinity'::timestamptz ELSE :title_at END,
        CASE WHEN :title IS NULL THEN -1 ELSE :sequence END)
ON CONFLICT (question_id) DO UPDATE SET
    title = CASE WHEN (excluded.title_sequence, excluded.title_at)
                      > (q.title_sequence, q.title_at)
                 THEN excluded.title ELSE q.title END,
    title_at = CASE WHEN (excluded.title_sequence, excluded.title_at)
                         > (q.title_sequence, q.title_at)
                    THEN excluded.title_at ELSE q.title_at END,
    title_sequence = greatest(q.title_sequence, excluded.title_sequence),
    author = coalesce(q.author, excluded.author),
    updated_at = now()
"""
)

_TARGET = text(
    """
SELECT q.title, q.title_at > '-infinity'::timestamptz AS has_title, q.author,
       u.name IS NOT NULL AS user_known, u.email, coalesce(u.opted_out, false)
FROM notifier.questions AS q
LEFT JOIN notifier.users AS u ON u.name = q.author
WHERE q.question_id = :question_id
"""
)

_RECORD = text(
    """
INSERT INTO notifier.deliveries (event_id, answer_id, question_id, recipient, outcome)
VALUES (:event_id, :answer_id, :question_id, :recipient, :outcome)
ON CONFLICT (event_id) DO NOTHING
"""
)


async def upsert_user(
    conn: AsyncConnection, name: str, email: str | None, opted_out: bool, revision: int
) -> None:
    params = {"name": name, "email": email, "opted_out": opted_out, "revision": revision}
    await conn.execute(_UPSERT_USER, params)


async def upsert_question(
    conn: AsyncConnection,
    question_id: uuid.UUID,
    at: datetime,
    *,
    title: str | None = None,
    author: str | None = None,
    sequence: int = 0,
) -> None:
    """Record what an event says about a question: its title as of event ``sequence``
    (written at ``at``), its author."""
    params = {
        "question_id": question_id,
        "title": title,
        "author": author,
        "title_at": at,
        "sequence": sequence,
    }
    await conn.execute(_UPSERT_QUESTION, params)


@dataclass(frozen=True)
class Target:
    """What the notifier knows about the question an answer belongs to."""

    title: str | None  # None: no title-bearing event has arrived yet
    author: str | None  # None: not known yet
    user_known: bool  # a user.* event for the author has arrived
    email: str | None
    opted_out: bool


async def target_of(conn: AsyncConnection, question_id: uuid.UUID) -> Target | None:
    """The question's title and its author's address; None when the question is unknown."""
    row = (await conn.execute(_TARGET, {"question_id": question_id})).first()
    if row is None:
        return None
    title, has_title, author, user_known, email, opted_out = row
    return Target(title if has_title else None, author, bool(user_known), email, bool(opted_out))


async def log_outcome(
    conn: AsyncConnection,
    event_id: uuid.UUID,
    answer_id: uuid.UUID,
    question_id: uuid.UUID,
    recipient: str,
    outcome: str,
) -> None:
    """Log what was done about an answer (the first row per event is kept)."""
    params = {
        "event_id": event_id,
        "answer_id": answer_id,
        "question_id": question_id,
        "recipient": recipient,
        "outcome": outcome,
    }
    await conn.execute(_RECORD, params)
