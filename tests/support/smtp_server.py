"""A real SMTP server for tests (aiosmtpd), with a per-recipient policy and a mail log.

Runs in a thread of the test process; the notifier (in-process or a subprocess) talks
real SMTP to it. Every accepted mail is logged with its ``Message-ID``, recipient,
subject, when its session started (``MAIL FROM``) and when it was accepted, so a test
counts mails per notification exactly as a mail system would see them.

    server = TestSmtpServer().start()
    server.reject("bob@example.test")              # 550 for this recipient
    server.defer("carol@example.test", times=2)    # 451 twice, then accept
    ...
    server.count(message_id)                       # copies accepted
    server.stop(); server.start()                  # a server outage (same port)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.tcpproxy import free_port

REJECT_REPLY = "550 5.1.1 <{}>: no such mailbox here"
DEFER_REPLY = "451 4.7.1 <{}>: greylisted, try again later"


@dataclass(frozen=True)
class Mail:
    message_id: str
    to: str
    subject: str
    body: str
    session_started: float
    accepted_at: float


class _Handler:
    def __init__(self, server: TestSmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        session.started_at = time.time()
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.server.policy_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=default_policy)
        body = parsed.get_body(("plain",))
        mail = Mail(
            message_id=str(parsed["Message-ID"]),
            to=",".join(envelope.rcpt_tos),
            subject=str(parsed["Subject"]),
            body=body.get_content() if body is not None else "",
            session_started=getattr(session, "started_at", time.time()),
            accepted_at=time.time(),
        )
        self.server.record(mail)
        return "250 Message accepted for delivery"


class TestSmtpServer:
    """aiosmtpd on 127.0.0.1:<free port>, restartable on the same port."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._rejected: set[str] = set()
        self._deferrals: Counter[str] = Counter()
        self.refusals: list[str] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> TestSmtpServer:
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # -- policy ---------------------------------------------------------------------

    def reject(self, address: str) -> None:
        """Answer RCPT TO for ``address`` with a permanent 550."""
        with self._lock:
            self._rejected.add(address.lower())

    def defer(self, address: str, times: int) -> None:
        """Answer RCPT TO for ``address`` with 451 the next ``times`` times."""
        with self._lock:
            self._deferrals[address.lower()] += times

    def policy_reply(self, address: str) -> str | None:
        key = address.lower()
        with self._lock:
            if key in self._rejected:
                reply = REJECT_REPLY.format(address)
            elif self._deferrals[key] > 0:
                self._deferrals[key] -= 1
                reply = DEFER_REPLY.format(address)
            else:
                return None
            self.refusals.append(reply)
            return reply

    # -- the mail log ---------------------------------------------------------------

    def record(self, mail: Mail) -> None:
        with self._lock:
            self._mails.append(mail)

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if m.to.lower() == address.lower()]

    def count(self, message_id: str) -> int:
        return sum(1 for m in self.mails if m.message_id == message_id)

    def counts(self) -> Counter[str]:
        return Counter(m.message_id for m in self.mails)
