"""Database schema (SQLAlchemy 2 declarative). Alembic migrations are generated against this.

Schema ``qa`` holds the write side (questions, answers, outbox, tokens, idempotency keys).
Schema ``feed`` holds the feed read model; schema ``subscribers`` what the subscriber
runtime keeps for every subscriber: the inbox and the dead-letter store.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return text("now()")


class ApiToken(Base):
    """A bearer token. ``writer`` tokens use the API; ``operator`` tokens sign in to the
    operators' console. Only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('writer', 'operator')", name="role"),
        Index(None, "user_name"),
        {"schema": "qa"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), server_default="writer")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A user as the notifier needs to know it (``qa-ops users``). Tokens name users by
    ``user_name`` and need no row here; a user without a row or an address gets no mail.

    ``revision`` grows by one per change and travels in every ``user.*`` event, so a
    subscriber keeps the newest state whatever the delivery order.
    """

    __tablename__ = "users"
    __table_args__ = {"schema": "qa"}

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254))
    opted_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    revision: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = {"schema": "qa"}

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(40))
    grade: Mapped[int] = mapped_column(SmallInteger)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Sequence number of the question's latest event (creation, edit, answer): the next
    # event takes last_sequence + 1 under the row lock (migration 0008).
    last_sequence: Mapped[int] = mapped_column(BigInteger, server_default="1")


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        Index(None, "question_id", "created_at"),
        {"schema": "qa"},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    question_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qa.questions.id"))
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """A POST's stored result, so a client retry with the same key returns it again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "created_at"), {"schema": "qa"})

    user_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class OutboxRow(Base):
    """One message to publish. ``body`` is the exact bytes that go on the wire.

    Rows are claimed by scanning for unpublished ones (never by an ``id > last_id``
    high-water mark), so a row committed late by a slow transaction is still found.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_pending_shard",
            "shard",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_published_at",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
        Index(None, "event_id"),
        {"schema": "qa"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(100))
    aggregate_type: Mapped[str] = mapped_column(String(50))
    aggregate_id: Mapped[str] = mapped_column(String(100))
    # '' is the default exchange: used to re-deliver a replayed dead letter to one queue.
    exchange: Mapped[str] = mapped_column(String(255), server_default="qa.events")
    routing_key: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=_now()
    )
    # Relay shard (outbox.uow.shard_of): which relay shard publishes the row (migration 0009).
    shard: Mapped[int] = mapped_column(SmallInteger, server_default="0")


class FeedQuestion(Base):
    """Feed read model. A row may exist before its question event arrives (answer first);
    it is shown only once ``title`` is known."""

    __tablename__ = "questions"
    __table_args__ = (
        Index("ix_feed_questions_newest", text("created_at DESC"), text("question_id DESC")),
        Index(
            "ix_feed_questions_subject_grade",
            "subject",
            "grade",
            text("created_at DESC"),
            text("question_id DESC"),
        ),
        # Pages filtered by subject only / grade only (migration 0010).
        Index(
            "ix_feed_questions_subject",
            "subject",
            text("created_at DESC"),
            text("question_id DESC"),
        ),
        Index(
            "ix_feed_questions_grade", "grade", text("created_at DESC"), text("question_id DESC")
        ),
        {"schema": "feed"},
    )

    question_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(40))
    grade: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answer_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_answer_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered: Mapped[bool] = mapped_column(Computed("answer_count > 0", persisted=True))
    # Envelope sequence of the event title/subject/grade came from: a change with a lower
    # one is stale (last writer by sequence, never by arrival). NULL: none applied yet.
    state_sequence: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class InboxEntry(Base):
    """Event ids a subscriber has applied, in the subscriber's own database: written in the
    same transaction as a projection, or right after a side effect. Rows older than
    ``QA_INBOX_RETENTION_SECONDS`` are deleted."""

    __tablename__ = "inbox"
    __table_args__ = (Index(None, "subscriber", "processed_at"), {"schema": "subscribers"})

    subscriber: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class DeadLetter(Base):
    """A message a subscriber gave up on, with its original body and headers byte for byte."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index(None, "status", "dead_lettered_at"),
        Index(None, "event_type"),
        Index(None, "error_class"),
        Index(None, "subscriber", "status"),
        {"schema": "subscribers"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subscriber: Mapped[str] = mapped_column(String(64))
    # Unique per dead-lettering: a redelivered dead letter is stored once.
    dedup_key: Mapped[str] = mapped_column(String(128), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(100))
    routing_key: Mapped[str | None] = mapped_column(String(255))
    failed_queue: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    error_class: Mapped[str] = mapped_column(String(200))
    error_message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    disposition: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_lettered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    status: Mapped[str] = mapped_column(String(16), server_default="dead")
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeadLetterAudit(Base):
    """Who replayed or discarded which dead letter, when, and with what outcome."""

    __tablename__ = "dead_letter_audit"
    __table_args__ = {"schema": "subscribers"}

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dead_letter_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.dead_letters.id"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
