"""The notifier's projections and its answer side effect, called directly, against a real
SMTP server (aiosmtpd) and the real database: who gets a mail, who does not, and how each
SMTP failure leaves the side effect (the runtime-level path is in
test_notifier_subscriber.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.notifier.mail import SmtpSender, SmtpTarget
from consumers.notifier.notifier import Notifier, project_questions, project_users
from consumers.runtime.disposition import Outcome, classify
from outbox.db import make_async_engine
from outbox.errors import DeliveryDeferred, DeliveryRejected, NotKnownYet
from outbox.events import Envelope
from outbox.settings import Settings
from tests.integration.notifier_support import (
    address,
    answer_event,
    decoded,
    fresh_name,
    mail_id,
    question_event,
    smtp,
    user_event,
)
from tests.support.smtp_server import TestSmtpServer

__all__ = ["smtp"]  # the module-scoped SMTP server fixture

WAIT = 60.0  # seconds an answer waits for an unknown user


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_async_engine(settings.database_url, application_name="test-notifier")
    yield eng
    await eng.dispose()


def make_notifier(engine: AsyncEngine, url: str) -> Notifier:
    sender = SmtpSender(SmtpTarget.parse(url), "Q&A <no-reply@qa.test>", timeout=5)
    return Notifier(engine, sender, unknown_user_wait=WAIT)


@pytest.fixture
def notifier(engine: AsyncEngine, smtp: TestSmtpServer) -> Notifier:
    return make_notifier(engine, smtp.url)


async def _known(engine: AsyncEngine, *envelopes: Envelope) -> None:
    """Project user and question events as the runtime would (one transaction)."""
    async with engine.begin() as conn:
        for envelope in envelopes:
            project = project_users if envelope.type.startswith("user.") else project_questions
            await project(conn, [decoded(envelope)])


async def test_the_author_gets_one_mail_with_the_title(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    alice, bob = fresh_name("alice"), fresh_name("bob")
    question = question_event(alice, title="Why do cats purr?")
    answer = answer_event(question, bob)
    await _known(engine, user_event(alice), user_event(bob), question)
    assert await notifier.notify(decoded(answer)) == "sent"
    (mail,) = smtp.to(address(alice))
    assert mail.subject == "New answer to your question 'Why do cats purr?'"
    assert mail.message_id == mail_id(answer)
    assert bob in mail.body
    async with engine.connect() as conn:
        outcome = await conn.scalar(
            text("SELECT outcome FROM notifier.deliveries WHERE event_id = :e"), {"e": answer.id}
        )
    assert outcome == "sent"


@pytest.mark.parametrize(
    ("setup", "outcome"),
    [
        ("self-answer", "self-answer"),
        ("opted-out", "opted-out"),
        ("no-address", "no-address"),
        ("opted-out-later", "opted-out"),
    ],
)
async def test_no_mail_for_self_answers_opted_out_users_and_users_without_address(
    notifier: Notifier, smtp: TestSmtpServer, setup: str, outcome: str, engine: AsyncEngine
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answerer = alice if setup == "self-answer" else fresh_name("bob")
    users = {
        "self-answer": [user_event(alice)],
        "opted-out": [user_event(alice, opted_out=True)],
        "no-address": [user_event(alice, email=None)],
        # revision 2 (opted out) arrives before revision 1: the newest state wins
        "opted-out-later": [user_event(alice, opted_out=True, revision=2), user_event(alice)],
    }[setup]
    await _known(engine, *users, question)
    assert await notifier.notify(decoded(answer_event(question, answerer))) == outcome
    assert smtp.to(address(alice)) == []


async def test_an_answer_before_its_question_or_user_waits_then_mails(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    with pytest.raises(NotKnownYet, match="question"):
        await notifier.notify(decoded(answer))
    await _known(engine, question)
    with pytest.raises(NotKnownYet, match="user"):
        await notifier.notify(decoded(answer))
    await _known(engine, user_event(alice))
    assert await notifier.notify(decoded(answer)) == "sent"
    assert smtp.count(mail_id(answer)) == 1


async def test_a_user_never_registered_gets_no_mail_after_the_wait(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    tokens_only = fresh_name("dev")
    question = question_event(tokens_only)
    await _known(engine, question)
    old_answer = answer_event(question, fresh_name("bob"), age=WAIT + 1)
    assert await notifier.notify(decoded(old_answer)) == "unknown-user"
    assert smtp.to(address(tokens_only)) == []


async def test_smtp_4xx_is_transient_and_a_later_attempt_sends(
    notifier: Notifier, smtp: TestSmtpServer, settings: Settings, engine: AsyncEngine
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    await _known(engine, user_event(alice), question)
    smtp.defer(address(alice), times=1)
    with pytest.raises(DeliveryDeferred, match="451") as caught:
        await notifier.notify(decoded(answer))
    disposition = classify(caught.value, 0, settings.retry_delays, 3)
    assert disposition.outcome is Outcome.RETRY_LATER
    assert await notifier.notify(decoded(answer)) == "sent"
    assert smtp.count(mail_id(answer)) == 1


async def test_smtp_5xx_is_permanent_and_carries_the_reply(
    notifier: Notifier, smtp: TestSmtpServer, settings: Settings, engine: AsyncEngine
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    await _known(engine, user_event(alice), question)
    smtp.reject(address(alice))
    with pytest.raises(DeliveryRejected) as caught:
        await notifier.notify(decoded(answer))
    assert "550 5.1.1" in str(caught.value) and "no such mailbox" in str(caught.value)
    assert classify(caught.value, 0, settings.retry_delays, 3).outcome is Outcome.DEAD_LETTER
    assert smtp.to(address(alice)) == []


async def test_a_down_smtp_server_is_transient(engine: AsyncEngine, settings: Settings) -> None:
    down = TestSmtpServer()  # never started: connection refused on its port
    notifier = make_notifier(engine, down.url)
    alice = fresh_name("alice")
    question = question_event(alice)
    await _known(engine, user_event(alice), question)
    with pytest.raises(ConnectionError) as caught:
        await notifier.notify(decoded(answer_event(question, fresh_name("bob"))))
    assert classify(caught.value, 0, settings.retry_delays, 3).outcome is Outcome.RETRY_LATER


async def test_a_newer_title_wins_and_an_older_one_changes_nothing(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    from consumers.notifier import state

    alice = fresh_name("alice")
    question = question_event(alice, title="first")
    await _known(engine, user_event(alice), question)
    qid = question.data["question_id"]
    async with engine.begin() as conn:  # what a title-changing event will do
        later = question.occurred_at.replace(year=question.occurred_at.year + 1)
        await state.upsert_question(conn, qid, later, title="second")
        await state.upsert_question(conn, qid, question.occurred_at, title="stale")
    await notifier.notify(decoded(answer_event(question, fresh_name("bob"))))
    (mail,) = smtp.to(address(alice))
    assert mail.subject == "New answer to your question 'second'"


async def test_the_mail_names_the_latest_title_from_edits_and_v2_answers(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    from tests.integration.notifier_support import answer_v2_event, edited_event

    alice = fresh_name("alice")
    question = question_event(alice, title="first")
    edited = edited_event(question, "edited")
    await _known(engine, user_event(alice), edited, question)  # the edit arrives first
    v1 = answer_event(question, fresh_name("bob"))
    assert await notifier.notify(decoded(v1)) == "sent"
    v2 = answer_v2_event(question, fresh_name("carol"), title="carried by the answer")
    assert await notifier.notify(decoded(v2)) == "sent"
    subjects = [m.subject for m in smtp.to(address(alice))]
    assert subjects == [
        "New answer to your question 'edited'",
        "New answer to your question 'carried by the answer'",
    ]


async def test_the_title_of_the_highest_sequence_wins_whatever_the_clocks_say(
    notifier: Notifier, smtp: TestSmtpServer, engine: AsyncEngine
) -> None:
    """Two API processes with skewed clocks: the later edit (sequence 3) carries an EARLIER
    time than the one before it (sequence 2). Sequence decides, in either arrival order."""
    from tests.integration.notifier_support import edited_event

    for order in ("newest-last", "newest-first"):
        alice = fresh_name("alice")
        question = question_event(alice, title="first")
        older = edited_event(question, "second (sequence 2)").model_copy(update={"sequence": 2})
        newest = edited_event(question, "third (sequence 3)").model_copy(
            update={"sequence": 3, "occurred_at": older.occurred_at.replace(year=2000)}
        )
        question = question.model_copy(update={"sequence": 1})
        edits = (older, newest) if order == "newest-last" else (newest, older)
        await _known(engine, user_event(alice), question, *edits)
        await notifier.notify(decoded(answer_event(question, fresh_name("bob"))))
        (mail,) = smtp.to(address(alice))
        assert mail.subject == "New answer to your question 'third (sequence 3)'", order
