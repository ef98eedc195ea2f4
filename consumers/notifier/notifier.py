"""The email notifier's behaviour: keep a copy of users and questions, and mail a
question's author when an answer arrives.

* ``user.registered`` / ``user.updated`` and ``question.created`` / ``question.edited`` are
  projections (:func:`project_users`, :func:`project_questions`): applied by the runtime in
  one transaction with their inbox rows, in any order (newest revision / latest title win).
* ``answer.created`` (v1 ids only, v2 with the question's state) is a side effect
  (:meth:`Notifier.notify`): one mail to the question's author unless they answered their
  own question, opted out, or have no address. A v2 answer also carries the question's
  title as of the answer, which is kept like an edit's (the latest wins). The
  runtime skips answers already in the notifier's inbox (the sent-log) and records the
  row right after :meth:`Notifier.notify` returned: a crash in between sends the mail
  again on redelivery (the documented window; the crash point marks it).

A question or user not known yet raises :class:`NotKnownYet` (transient: the retry tiers
wait for its event), so delivery order never loses a mail. A user still unknown
``unknown_user_wait`` seconds after the answer was written is taken to be a token-only
user without a user row: no mail, logged as ``unknown-user``.

Every decision is also written to ``notifier.deliveries`` (an outcome log for operators
and the chaos checker; it decides nothing).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.notifier import state
from consumers.notifier.crashpoint import crash_point
from consumers.notifier.mail import Notification, SmtpSender
from outbox.errors import NotKnownYet
from outbox.events import (
    AnswerCreatedV1,
    AnswerCreatedV2,
    DecodedEvent,
    QuestionCreatedV1,
    QuestionEditedV1,
    UserRegisteredV1,
    UserUpdatedV1,
)

log = logging.getLogger("qa.consumer.notifier")

SENT = "sent"
MAILS = Counter(
    "qa_notifier_mails_total",
    "answer.created events the notifier handled, by outcome (sent, or why not).",
    ["outcome"],
)


async def project_users(conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
    """``user.registered`` / ``user.updated``: keep the newest state of each user."""
    for event in events:
        data = event.data
        assert isinstance(data, UserRegisteredV1 | UserUpdatedV1)
        await state.upsert_user(conn, data.name, data.email, data.opted_out, data.revision)


async def project_questions(conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
    """``question.created`` (title and author) and ``question.edited`` (the title after the
    edit), each as of the event's time: the latest title wins in any delivery order."""
    for event in events:
        data = event.data
        at, sequence = event.envelope.occurred_at, event.envelope.sequence or 0
        if isinstance(data, QuestionCreatedV1):
            await state.upsert_question(
                conn, data.question_id, at, title=data.title, author=data.author, sequence=sequence
            )
        else:
            assert isinstance(data, QuestionEditedV1)
            await state.upsert_question(
                conn, data.question_id, at, title=data.title, sequence=sequence
            )


def _answered(data: object) -> tuple[uuid.UUID, str | None]:
    """(question id, the question's title as the answer saw it, if the version carries it)."""
    if isinstance(data, AnswerCreatedV2):
        return data.question.id, data.question.title
    assert isinstance(data, AnswerCreatedV1)
    return data.question_id, None


class Notifier:
    """What the ``answer.created`` side effect needs: the state engine and an SMTP sender."""

    def __init__(self, engine: AsyncEngine, sender: SmtpSender, unknown_user_wait: float) -> None:
        self._engine = engine
        self._sender = sender
        self._unknown_user_wait = unknown_user_wait

    async def notify(self, event: DecodedEvent) -> str:
        """Mail the author of the answered question (or decide not to); returns the outcome.

        Returns once the SMTP server accepted the mail; raises a classified error otherwise.
        """
        env, data = event.envelope, event.data
        assert isinstance(data, AnswerCreatedV1 | AnswerCreatedV2)
        question_id, title = _answered(data)
        async with self._engine.begin() as conn:
            if title is not None:
                await state.upsert_question(
                    conn, question_id, env.occurred_at, title=title, sequence=env.sequence or 0
                )
            target = await state.target_of(conn, question_id)
        outcome, recipient = self._decide(event, question_id, target)
        if outcome == SENT:
            assert target is not None and target.email is not None and target.title is not None
            notification = Notification(
                env.id, target.email, target.title, question_id, data.author, data.created_at
            )
            await self._sender.send(notification)
            crash_point("after_send")  # test-only: the window before the sent-log row
        async with self._engine.begin() as conn:
            await state.log_outcome(conn, env.id, data.answer_id, question_id, recipient, outcome)
        MAILS.labels(outcome).inc()
        log.info("answer %s: %s (user %s)", data.answer_id, outcome, recipient)
        return outcome

    def _decide(
        self, event: DecodedEvent, question_id: uuid.UUID, target: state.Target | None
    ) -> tuple[str, str]:
        """(outcome, recipient user name); raises NotKnownYet while facts are missing."""
        data = event.data
        assert isinstance(data, AnswerCreatedV1 | AnswerCreatedV2)
        if target is None or target.author is None or target.title is None:
            raise NotKnownYet(f"question {question_id} not known to the notifier yet")
        author = target.author
        if author == data.author:
            return "self-answer", author
        if not target.user_known:
            age = (datetime.now(UTC) - event.envelope.occurred_at).total_seconds()
            if age < self._unknown_user_wait:
                raise NotKnownYet(f"user {author!r} not known to the notifier yet")
            return "unknown-user", author
        if target.opted_out:
            return "opted-out", author
        if target.email is None:
            return "no-address", author
        return SENT, author
