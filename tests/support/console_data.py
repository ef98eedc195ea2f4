"""Arranging rows for console tests: tokens by role and dead letters as the archiver stores them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from outbox.events import QuestionCreatedV1, new_envelope
from outbox.headers import to_jsonable
from outbox.models import ApiToken, DeadLetter
from outbox.tokens import hash_token, new_token

TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/consumers/consumer.py", line 88, in handle
    await self._apply(batch)
  File "/srv/app/consumers/feed.py", line 140, in {func}
    await conn.execute(stmt)
  File "/usr/lib/python3/site-packages/sqlalchemy/engine/base.py", line 1418, in execute
    raise exc
psycopg.OperationalError: the database system is shutting down
"""


def make_token(db: Engine, user: str, role: str = "writer") -> tuple[int, str]:
    token = new_token()
    with db.begin() as conn:
        token_id = conn.scalar(
            insert(ApiToken)
            .values(user_name=user, token_hash=hash_token(token), role=role)
            .returning(ApiToken.id)
        )
    return int(token_id), token


def question_letter(
    db: Engine, subject: str, error_class: str = "OperationalError", func: str = "apply_batch"
) -> tuple[int, uuid.UUID]:
    """A genuine question.created event that failed transiently until its tiers ran out."""
    data = QuestionCreatedV1(
        question_id=uuid.uuid4(),
        title=f"Replayed question {subject}",
        subject=subject,
        grade=9,
        author="console-test",
        created_at=datetime.now(UTC),
    )
    envelope = new_envelope("question.created", "question", data.question_id, data)
    dead_id = str(uuid.uuid4())
    headers = {
        "x-error-class": error_class,
        "x-attempts": 5,
        "x-dead-letter-id": dead_id,
        "x-failed-queue": "feed.events",
        "x-disposition": "exhausted",
    }
    values: dict[str, Any] = {
        "dedup_key": dead_id,
        "message_id": str(envelope.id),
        "event_type": "question.created",
        "routing_key": "question.created",
        "failed_queue": "feed.events",
        "subscriber": "feed",
        "body": envelope.to_bytes(),
        "properties": {"message_id": str(envelope.id), "type": "question.created"},
        "headers": to_jsonable(headers),
        "error_class": error_class,
        "error_message": "the database system is shutting down",
        "traceback": TRACEBACK.format(func=func),
        "disposition": "exhausted",
        "attempts": 5,
        "first_failed_at": datetime.now(UTC),
        "dead_lettered_at": datetime.now(UTC),
    }
    with db.begin() as conn:
        letter_id = conn.scalar(insert(DeadLetter).values(values).returning(DeadLetter.id))
    return int(letter_id), envelope.id
