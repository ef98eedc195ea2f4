"""The notifier as a subscriber of the real runtime: real RabbitMQ, PostgreSQL and an SMTP
server (aiosmtpd) started here. Events are published to ``qa.events`` as the relay would."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from consumers.notifier import SUBSCRIBER as NOTIFIER
from outbox.events import Envelope
from outbox.settings import Settings
from tests.integration.notifier_support import (
    address,
    answer_event,
    fresh_name,
    mail_id,
    question_event,
    smtp,
    user_event,
)
from tests.integration.test_feed_support import (
    envelope_message,
    poll,
    publish,
    publish_events,
    running_consumer,
)
from tests.support.smtp_server import TestSmtpServer

__all__ = ["smtp"]  # the module-scoped SMTP server fixture

FAST_TIERS = {"retry_delays": [0.2, 0.4, 0.8, 1.6, 3.2], "notifier_metrics_port": 0}


@contextlib.asynccontextmanager
async def notifier(
    settings: Settings, smtp: TestSmtpServer, **overrides: Any
) -> AsyncIterator[AbstractChannel]:
    """The notifier running in-process against ``smtp``, and a confirming channel."""
    options = {**FAST_TIERS, "smtp_url": smtp.url, **overrides}
    async with running_consumer(settings, subscriber=NOTIFIER, **options):
        connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        async with connection:
            yield await connection.channel(publisher_confirms=True, on_return_raises=True)


async def test_an_answer_mails_the_author_once_even_when_delivered_again(
    settings: Settings, smtp: TestSmtpServer
) -> None:
    alice, bob = fresh_name("alice"), fresh_name("bob")
    question = question_event(alice, title="Where do rivers start?")
    answer = answer_event(question, bob)
    async with notifier(settings, smtp) as channel:
        await publish_events(channel, [user_event(alice), user_event(bob), question, answer])
        await poll("the mail", lambda: smtp.count(mail_id(answer)) == 1)
        # The same event again (a relay re-publish, a redelivery): the sent-log absorbs it.
        await publish_events(channel, [answer, answer])
        sentinel = answer_event(question, fresh_name("carol"))
        await publish_events(channel, [sentinel])
        await poll("the sentinel's mail", lambda: smtp.count(mail_id(sentinel)) == 1)
    assert smtp.count(mail_id(answer)) == 1
    (mail, _) = smtp.to(address(alice))
    assert mail.subject == "New answer to your question 'Where do rivers start?'"


async def test_an_answer_that_arrives_before_its_question_and_user_still_mails(
    settings: Settings, smtp: TestSmtpServer
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    async with notifier(settings, smtp) as channel:
        await publish_events(channel, [answer])  # nothing known yet: retried via the tiers
        await publish_events(channel, [question])
        await publish_events(channel, [user_event(alice)])
        await poll("the late mail", lambda: smtp.count(mail_id(answer)) == 1, timeout=60)


async def test_smtp_4xx_is_retried_through_the_tiers_until_accepted(
    settings: Settings, smtp: TestSmtpServer
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    smtp.defer(address(alice), times=2)
    async with notifier(settings, smtp) as channel:
        await publish_events(channel, [user_event(alice), question, answer])
        await poll("the mail after two 451s", lambda: smtp.count(mail_id(answer)) == 1, 60)
    assert sum(1 for r in smtp.refusals if address(alice) in r and r.startswith("451")) == 2


@contextlib.asynccontextmanager
async def dead_letters(
    channel: AbstractChannel,
) -> AsyncIterator[dict[str, AbstractIncomingMessage]]:
    got: dict[str, AbstractIncomingMessage] = {}

    async def keep(message: AbstractIncomingMessage) -> None:
        got[message.message_id or ""] = message
        await message.ack()

    queue = await channel.get_queue(NOTIFIER.dead_queue)
    tag = await queue.consume(keep)
    try:
        yield got
    finally:
        await queue.cancel(tag)


async def test_smtp_5xx_is_dead_lettered_at_once_with_the_servers_reply(
    settings: Settings, smtp: TestSmtpServer
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    smtp.reject(address(alice))
    async with notifier(settings, smtp) as channel, dead_letters(channel) as dead:
        await publish_events(channel, [user_event(alice), question, answer])
        letter = await poll("the dead letter", lambda: dead.get(str(answer.id)))
    headers = letter.headers
    assert headers["x-error-class"] == "DeliveryRejected"
    assert headers["x-disposition"] == "permanent"
    assert headers["x-attempts"] == 1
    assert "550 5.1.1" in str(headers["x-error-message"])
    assert "no such mailbox" in str(headers["x-error-message"])
    assert letter.body == answer.to_bytes()  # the original bytes, replayable
    assert smtp.to(address(alice)) == []


async def test_an_unknown_version_is_dead_lettered_and_the_rest_still_mails(
    settings: Settings, smtp: TestSmtpServer
) -> None:
    alice = fresh_name("alice")
    question = question_event(alice)
    answer = answer_event(question, fresh_name("bob"))
    v3 = Envelope.model_validate({**answer.model_dump(), "version": 3, "id": uuid.uuid4()})
    async with notifier(settings, smtp) as channel, dead_letters(channel) as dead:
        await publish_events(channel, [user_event(alice), question])
        # answer.created v3 is routed to the notifier (its binding is the type) but not
        # declared: permanent, first delivery.
        await publish(channel, envelope_message(v3), v3.type)
        await publish_events(channel, [answer])
        await poll("the v1 mail", lambda: smtp.count(mail_id(answer)) == 1)
        letter = await poll("the v3 dead letter", lambda: dead.get(str(v3.id)))
    assert letter.headers["x-error-class"] == "UnknownEventType"
