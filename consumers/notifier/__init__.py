"""The email notifier subscriber (``qa-consumer run notifier``): mails a question's author
when an answer arrives. Registered as entry point ``notifier`` in group
``qa.subscribers``; imports only ``outbox`` (and its own modules).

Its declaration: users and questions are projections into schema ``notifier`` of its
database (``QA_NOTIFIER_DATABASE_URL``, default ``QA_DATABASE_URL``); an answer is a side
effect (one SMTP mail). See :mod:`consumers.notifier.notifier`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.notifier.mail import SmtpSender, SmtpTarget
from consumers.notifier.notifier import Notifier, project_questions, project_users
from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.subscribers import Projection, SideEffect, Subscriber, Tuning


@contextlib.asynccontextmanager
async def _resources(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Notifier]:
    target = SmtpTarget.parse(settings.smtp_url)
    sender = SmtpSender(target, settings.notifier_from, settings.smtp_timeout_seconds)
    yield Notifier(engine, sender, settings.notifier_unknown_user_wait_seconds)


async def _notify(notifier: Notifier, event: DecodedEvent) -> None:
    await notifier.notify(event)


SUBSCRIBER = Subscriber(
    name="notifier",
    handlers={
        ("user.registered", 1): Projection(project_users),
        ("user.updated", 1): Projection(project_users),
        ("question.created", 1): Projection(project_questions),
        ("question.edited", 1): Projection(project_questions),
        ("answer.created", 1): SideEffect(_notify),
        ("answer.created", 2): SideEffect(_notify),
    },
    database_setting="notifier_database_url",
    resources=_resources,
    # Mail is slow and rare next to the feed: small batches, a few SMTP sends at once.
    tuning=Tuning(
        prefetch=64,
        batch_size=32,
        effect_concurrency=4,
        metrics_port_setting="notifier_metrics_port",
    ),
)
