"""The notifier's one duplicate window, measured: ``qa-consumer run notifier`` as a real
process is killed exactly after the SMTP server accepted a mail and before the sent-log
(inbox) row is written (test-only crash point ``after_send``). After a restart the
SMTP server holds exactly 2 copies of that one notification and 1 of every other."""

from __future__ import annotations

import uuid
from pathlib import Path

import aio_pika
from sqlalchemy import Engine, text

from outbox.events import Envelope
from outbox.settings import Settings
from tests.integration.notifier_support import (
    address,
    answer_event,
    fresh_name,
    mail_id,
    question_event,
    user_event,
)
from tests.integration.test_feed_support import poll, publish_events
from tests.support.procs import spawn
from tests.support.smtp_server import TestSmtpServer


def _recorded(db: Engine, event_id: uuid.UUID) -> bool:
    with db.connect() as conn:
        return bool(
            conn.scalar(
                text(
                    "SELECT 1 FROM subscribers.inbox"
                    " WHERE subscriber = 'notifier' AND event_id = :e"
                ),
                {"e": event_id},
            )
        )


async def test_a_crash_between_accept_and_record_sends_that_one_mail_twice(
    settings: Settings, db: Engine, tmp_path: Path
) -> None:
    smtp = TestSmtpServer().start()
    env = {"QA_SMTP_URL": smtp.url, "QA_LOG_LEVEL": "INFO"}
    armed = {
        **env,
        "QA_TEST_HOOKS": "1",
        "QA_NOTIFIER_CRASH_POINT": "after_send",
        "QA_NOTIFIER_CRASH_AFTER": "2",
    }
    proc = spawn("notifier", tmp_path, armed)
    author = fresh_name("alice")
    question = question_event(author)
    first, crashed, later = (answer_event(question, fresh_name("bob")) for _ in range(3))
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    try:
        proc.start()  # declares notifier.events and its bindings
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

        async def send(*events: Envelope) -> None:
            await publish_events(channel, events)

        # One answer at a time, so the crash hits exactly one notification.
        await send(user_event(author), question, first)
        await poll("first mail recorded", lambda: _recorded(db, first.id), timeout=60)
        await send(crashed)
        await poll("the crash point", lambda: not proc.alive, timeout=60)
        assert proc.returncode == 137, proc.log_tail()
        assert smtp.count(mail_id(crashed)) == 1  # accepted, never recorded
        assert not _recorded(db, crashed.id)
        await send(later)  # waits in the queue while the notifier is down
        proc.env = {**proc.env, "QA_TEST_HOOKS": "0"}
        proc.start()
        for event in (crashed, later):
            await poll("recorded after restart", lambda e=event: _recorded(db, e.id), 60)
    finally:
        proc.terminate()
        await connection.close()
        smtp.stop()
    counts = {
        name: smtp.count(mail_id(e))
        for name, e in (("first", first), ("crashed", crashed), ("later", later))
    }
    assert counts == {"first": 1, "crashed": 2, "later": 1}
    assert {m.to for m in smtp.mails} == {address(author)}
