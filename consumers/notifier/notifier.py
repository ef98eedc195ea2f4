"""The email notifier: keeps its copy of users and questions, mails a question's author
when an answer arrives.

Handlers by event type (a registry, not an ``isinstance`` chain):

* ``user.registered`` / ``user.updated`` -> :func:`state.upsert_user` (newest revision wins);
* ``question.created`` -> :func:`state.upsert_question` (title and author);
* ``answer.created`` -> one mail to the question's author, unless they answered their own
  question, opted out, or have no address.

An answer is a side effect, not a projection, so its order is: look in the sent-log
(``notifier.deliveries``; a row = handled, do nothing) -> decide -> send (the SMTP server
accepted) -> write the sent-log row. A crash between "accepted" and "written" sends the
mail again on redelivery: at-least-once, the window documented in the README and
measured by ``tests/e2e/test_notifier_crash.py``. The record is retried in-process
for a while when the database blips, which keeps that window to crashes.

A question or user not known yet is :class:`NotKnownYet` (transient: the retry tiers
wait for its event), so delivery order never loses a mail. A user that stays unknown
for ``notifier_unknown_user_wait_seconds`` after the answer was written is taken to be
a token-only user without an address: no mail, recorded as ``unknown-user``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from consumers.notifier import state
from consumers.notifier.crashpoint import crash_point
from consumers.notifier.mail import Notification, SmtpSender
from outbox.errors import NotKnownYet
from outbox.events import (
    AnswerCreatedV1,
    DecodedEvent,
    QuestionCreatedV1,
    UserRegisteredV1,
    UserUpdatedV1,
)
from outbox.transient import is_transient

log = logging.getLogger("qa.consumer.notifier")

NAME = "notifier"
HANDLED_TYPES = (
    ("user.registered", 1),
    ("user.updated", 1),
    ("question.created", 1),
    ("answer.created", 1),
)
SENT = "sent"
MAILS = Counter(
    "qa_notifier_mails_total",
    "answer.created events handled by the notifier, by outcome (sent, or why not).",
    ["outcome"],
)
# How long the sent-log write after an accepted mail keeps retrying a failing database
# before the message goes back for redelivery (which would send the mail again).
RECORD_PATIENCE_SECONDS = 30.0


class Notifier:
    """Handles one decoded event at a time (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, sender: SmtpSender, unknown_user_wait: float) -> None:
        self._engine = engine
        self._sender = sender
        self._unknown_user_wait = unknown_user_wait
        self._handlers: dict[str, Callable[[DecodedEvent], Awaitable[str]]] = {
            "user.registered": self._user,
            "user.updated": self._user,
            "question.created": self._question,
            "answer.created": self._answer,
        }

    async def handle(self, event: DecodedEvent) -> str:
        """Apply or act on ``event``; returns what was done (for logs and tests)."""
        return await self._handlers[event.envelope.type](event)

    async def _user(self, event: DecodedEvent) -> str:
        data = event.data
        assert isinstance(data, UserRegisteredV1 | UserUpdatedV1)
        async with self._engine.begin() as conn:
            await state.upsert_user(conn, data.name, data.email, data.opted_out, data.revision)
        return "user"

    async def _question(self, event: DecodedEvent) -> str:
        data = event.data
        assert isinstance(data, QuestionCreatedV1)
        async with self._engine.begin() as conn:
            await state.upsert_question(
                conn,
                data.question_id,
                event.envelope.occurred_at,
                title=data.title,
                author=data.author,
            )
        return "question"

    async def _answer(self, event: DecodedEvent) -> str:
        env, data = event.envelope, event.data
        assert isinstance(data, AnswerCreatedV1)
        async with self._engine.connect() as conn:
            if await state.handled(conn, env.id) is not None:
                return "duplicate"
            target = await state.target_of(conn, data.question_id)
        outcome, recipient = self._decide(event, target)
        if outcome == SENT:
            assert target is not None and target.email is not None and target.title is not None
            await self._sender.send(
                Notification(
                    env.id,
                    target.email,
                    target.title,
                    data.question_id,
                    data.author,
                    data.created_at,
                )
            )
            crash_point("after_send")
        await self._record(event, recipient, outcome)
        MAILS.labels(outcome).inc()
        log.info("answer %s: %s (%s)", data.answer_id, outcome, recipient)
        return outcome

    def _decide(self, event: DecodedEvent, target: state.Target | None) -> tuple[str, str]:
        """(outcome, recipient name); raises NotKnownYet while facts are missing."""
        data = event.data
        assert isinstance(data, AnswerCreatedV1)
        if target is None or target.author is None or target.title is None:
            raise NotKnownYet(f"question {data.question_id} not known to the notifier yet")
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

    async def _record(self, event: DecodedEvent, recipient: str, outcome: str) -> None:
        data = event.data
        assert isinstance(data, AnswerCreatedV1)
        retrying = AsyncRetrying(
            stop=stop_after_delay(RECORD_PATIENCE_SECONDS),
            wait=wait_exponential_jitter(initial=0.1, max=2.0),
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._engine.begin() as conn:
                    await state.record(
                        conn,
                        event.envelope.id,
                        data.answer_id,
                        data.question_id,
                        recipient,
                        outcome,
                    )
