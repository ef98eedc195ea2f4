"""The notifier's mail, its SMTP URL and its test-only crash point (no services)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from consumers.notifier import crashpoint
from consumers.notifier.mail import Notification, SmtpTarget, message_id


def test_the_message_id_is_the_event_id_and_the_subject_names_the_title() -> None:
    event_id = uuid.uuid4()
    note = Notification(
        event_id, "ann@example.test", "Why 'quotes'?", uuid.uuid4(), "bob", datetime.now(UTC)
    )
    msg = note.message("Q&A <no-reply@qa.test>")
    assert msg["Message-ID"] == f"<{event_id}@qa-notifier>" == message_id(event_id)
    assert msg["Subject"] == "New answer to your question 'Why 'quotes'?'"
    assert msg["To"] == "ann@example.test"
    assert "bob answered your question" in msg.get_content()


def test_a_title_cannot_inject_headers() -> None:
    note = Notification(
        uuid.uuid4(),
        "a@example.test",
        "x\r\nBcc: evil@example.test",
        uuid.uuid4(),
        "b",
        datetime.now(UTC),
    )
    msg = note.message("Q&A <no-reply@qa.test>")
    assert msg["Bcc"] is None
    assert msg["Subject"] == "New answer to your question 'x Bcc: evil@example.test'"
    assert b"\nBcc:" not in msg.as_bytes()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:1025", ("127.0.0.1", 1025, False, False, None, None)),
        ("smtp://mail.example.test", ("mail.example.test", 25, False, False, None, None)),
        (
            "smtps://u%40x:p%2Fw@mail.example.test",
            ("mail.example.test", 465, True, False, "u@x", "p/w"),
        ),
        ("smtp://mx:587?starttls=1", ("mx", 587, False, True, None, None)),
    ],
)
def test_smtp_urls(url: str, expected: tuple[object, ...]) -> None:
    t = SmtpTarget.parse(SecretStr(url))
    assert (t.hostname, t.port, t.use_tls, t.start_tls, t.username, t.password) == expected


@pytest.mark.parametrize("url", ["http://x", "smtp://", "mail.example.test:25"])
def test_bad_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        SmtpTarget.parse(url)


def test_the_crash_point_is_armed_only_with_test_hooks() -> None:
    assert crashpoint.load({"QA_NOTIFIER_CRASH_POINT": "after_send"}) == (None, 0)
    armed = {"QA_TEST_HOOKS": "1", "QA_NOTIFIER_CRASH_POINT": "after_send"}
    assert crashpoint.load(armed) == ("after_send", 1)
    assert crashpoint.load({**armed, "QA_NOTIFIER_CRASH_AFTER": "3"}) == ("after_send", 3)
    with pytest.raises(ValueError):
        crashpoint.load({**armed, "QA_NOTIFIER_CRASH_POINT": "after_sned"})
