"""Composing and sending one notification mail over SMTP (aiosmtplib).

Every failure leaves here as one of the service's own errors, so the runtime's one
classification function decides its fate:

* a 5xx reply (no such mailbox, policy refusal) -> :class:`DeliveryRejected`, permanent:
  dead-lettered on the first delivery with the server's reply as the error message;
* a 4xx reply (greylisting, mailbox busy, try later) -> :class:`DeliveryDeferred`, transient;
* no connection, a dropped connection or a timeout stay ``ConnectionError`` /
  ``TimeoutError`` subclasses (aiosmtplib's own), which the classifier treats as transient.

The event id is the ``Message-ID``, so a mail sent twice (see the README's crash window)
is recognisable as the same notification by any mail system.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from pydantic import SecretStr

from outbox.errors import DeliveryDeferred, DeliveryRejected

MESSAGE_ID_DOMAIN = "qa-notifier"


def message_id(event_id: uuid.UUID) -> str:
    """The stable ``Message-ID`` of the mail for event ``event_id``."""
    return f"<{event_id}@{MESSAGE_ID_DOMAIN}>"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space: a title
    can never add a header line."""
    return " ".join(text.split())


def subject_for(title: str) -> str:
    return f"New answer to your question '{one_line(title)}'"


@dataclass(frozen=True)
class Notification:
    event_id: uuid.UUID
    to: str
    title: str
    question_id: uuid.UUID
    answered_by: str
    answered_at: datetime

    def message(self, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = self.to
        msg["Subject"] = subject_for(self.title)
        msg["Message-ID"] = message_id(self.event_id)
        msg["Date"] = format_datetime(self.answered_at)
        msg["X-QA-Event-Id"] = str(self.event_id)
        msg["X-QA-Question-Id"] = str(self.question_id)
        msg.set_content(
            f"{self.answered_by} answered your question '{one_line(self.title)}'.\n\n"
            f"Question id: {self.question_id}\n\n"
            "You get this mail because an address is registered for your user. "
            "Ask an operator to run 'qa-ops users opt-out <name>' to stop these mails.\n"
        )
        return msg


@dataclass(frozen=True)
class SmtpTarget:
    """Where to send: parsed from ``QA_SMTP_URL``."""

    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: SecretStr | str) -> SmtpTarget:
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        parts = urlsplit(raw)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("QA_SMTP_URL must look like smtp://host[:port] or smtps://host[:port]")
        use_tls = parts.scheme == "smtps"
        query = parse_qs(parts.query)
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            use_tls=use_tls,
            start_tls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class SmtpSender:
    """Sends one message per call on a fresh connection (notification volume is low)."""

    def __init__(self, target: SmtpTarget, sender: str, timeout: float) -> None:
        self._target = target
        self._sender = sender
        self._timeout = timeout

    async def send(self, notification: Notification) -> None:
        """Return once the server accepted the mail; raise a classified error otherwise."""
        t = self._target
        try:
            await aiosmtplib.send(
                notification.message(self._sender),
                hostname=t.hostname,
                port=t.port,
                use_tls=t.use_tls,
                start_tls=t.start_tls and not t.use_tls,  # never opportunistic
                username=t.username,
                password=t.password,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # One recipient per mail: its refusal is the answer.
            refused = exc.recipients[0]
            raise _by_code(refused.code, refused.message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if isinstance(exc, aiosmtplib.SMTPConnectError):
                raise  # a greeting refused (421/554) is a server problem: transient
            raise _by_code(exc.code, exc.message) from exc


def _by_code(code: int, reply: str) -> DeliveryRejected | DeliveryDeferred:
    text = f"SMTP {code} {reply}".strip()
    if 500 <= code < 600:
        return DeliveryRejected(text)
    return DeliveryDeferred(text)
