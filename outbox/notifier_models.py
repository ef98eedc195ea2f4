"""The email notifier's own state (schema ``notifier``), built only from events.

The notifier never reads the write tables: it keeps the copy it needs of users
(address, opt-out) and questions (title, author) from ``user.*`` and ``question.*``
events, and logs what it did about each ``answer.created`` in ``notifier.deliveries``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from outbox.models import Base


class NotifierUser(Base):
    """The newest known state of a user (highest ``revision`` wins, in any order)."""

    __tablename__ = "users"
    __table_args__ = {"schema": "notifier"}

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254))
    opted_out: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )


class NotifierQuestion(Base):
    """What a mail about an answer needs: the title (highest sequence wins) and the author."""

    __tablename__ = "questions"
    __table_args__ = {"schema": "notifier"}

    question_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # NULL until an event naming the author arrives (a title-only event may come first).
    author: Mapped[str | None] = mapped_column(String(64))
    # The envelope sequence of the event that set the title (-1 while none is known; 0 for
    # events from before sequences): a higher one replaces the title, a lower one arriving
    # late changes nothing. ``title_at`` (the event's time) only breaks ties.
    title_sequence: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    title_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )


class NotifierDelivery(Base):
    """The sent-log: one row per ``answer.created`` handled, written after the SMTP server
    accepted the mail (or after deciding not to send). A redelivery finds it and sends
    nothing."""

    __tablename__ = "deliveries"
    __table_args__ = {"schema": "notifier"}

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    answer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    question_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    recipient: Mapped[str] = mapped_column(String(64))
    # sent | self-answer | opted-out | no-address | unknown-user
    outcome: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
