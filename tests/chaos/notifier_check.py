"""The chaos checker's notifier part: every mail owed was sent, and every second copy of a
mail falls inside the one documented window.

Ground truth is the write side: an answer owes its question's author one mail when the
author is a user with an address who has not opted out and did not write the answer
(users are set up before the load and never change during a run). The SMTP server the
scenario runs logs every accepted mail with its ``Message-ID`` (``<event id@qa-notifier>``).

* **lost**: owed mails the server never accepted, and not dead-lettered on purpose;
* **duplicate mails**: copies beyond the first, per notification;
* **outside the window**: a copy whose SMTP session started after the sent-log row for
  its event had already been written (the notifier's inbox row, ``processed_at``, plus
  :data:`CLOCK_SLACK_SECONDS`). The notifier reads the sent-log before it connects, so
  such a copy means a recorded event was sent again - a bug, not the documented window
  (accepted by the server, crash or failure before the row is written);
* **unowed**: mails for events that owe none (self-answers, opted out, unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from tests.support.smtp_server import Mail

# The test process and PostgreSQL share one clock; this covers commit latency only.
CLOCK_SLACK_SECONDS = 0.5

_OWED = text(
    """
SELECT o.event_id::text
FROM qa.outbox AS o
JOIN qa.answers AS a ON a.id = (convert_from(o.body, 'UTF8')::jsonb -> 'data' ->> 'answer_id')::uuid
JOIN qa.questions AS q ON q.id = a.question_id
JOIN qa.users AS u ON u.name = q.author
WHERE o.event_type = 'answer.created'
  AND a.author <> q.author AND u.email IS NOT NULL AND NOT u.opted_out
"""
)


@dataclass
class NotifierReport:
    owed: int = 0
    mails: int = 0
    lost: list[str] = field(default_factory=list)
    duplicate_mails: int = 0
    duplicated_events: int = 0
    outside_window: list[str] = field(default_factory=list)
    unowed: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"notifier: {len(self.lost)} mails lost (e.g. {self.lost[:3]})")
        if self.outside_window:
            out.append(
                f"notifier: {len(self.outside_window)} duplicate mails outside the "
                f"documented window (e.g. {self.outside_window[:3]})"
            )
        if self.unowed:
            out.append(f"notifier: {len(self.unowed)} mails nobody was owed")
        return out

    def render(self) -> list[str]:
        return [
            "  notifier (subscriber 'notifier', mails counted at the SMTP server)",
            f"    mails owed               {self.owed}",
            f"    mails accepted           {self.mails} ({self.duplicated_events} notifications "
            f"sent more than once, {self.duplicate_mails} extra copies)",
            f"    LOST MAILS               {len(self.lost)}",
            f"    DUPLICATES OUTSIDE WINDOW {len(self.outside_window)}",
            f"    unowed mails             {len(self.unowed)}",
            f"    dead-lettered answers    {self.dead_lettered}",
            f"    sent-log outcomes        {dict(sorted(self.outcomes.items()))}",
        ]


def check_notifier(engine: Engine, mails: list[Mail]) -> NotifierReport:
    report = NotifierReport()
    with engine.connect() as conn:
        owed = {row[0] for row in conn.execute(_OWED)}
        # The sent-log: the runtime's inbox rows of the notifier (written right after the
        # SMTP server accepted; processed_at is that transaction's start).
        recorded = {
            str(row[0]): row[1].timestamp()
            for row in conn.execute(
                text(
                    "SELECT event_id, processed_at FROM subscribers.inbox"
                    " WHERE subscriber = 'notifier' AND event_type = 'answer.created'"
                )
            )
        }
        report.outcomes = {
            row[0]: int(row[1])
            for row in conn.execute(
                text("SELECT outcome, count(*) FROM notifier.deliveries GROUP BY outcome")
            )
        }
        report.dead_lettered = int(
            conn.execute(
                text(
                    "SELECT count(*) FROM subscribers.dead_letters "
                    "WHERE subscriber = 'notifier' AND event_type = 'answer.created'"
                )
            ).scalar_one()
        )
    by_event: dict[str, list[Mail]] = {}
    for mail in mails:
        event_id = mail.message_id.strip("<>").split("@", 1)[0]
        by_event.setdefault(event_id, []).append(mail)
    report.owed = len(owed)
    report.mails = len(mails)
    report.lost = sorted(owed - set(by_event))
    report.unowed = sorted(set(by_event) - owed)
    for event_id, copies in by_event.items():
        if len(copies) < 2:
            continue
        report.duplicated_events += 1
        report.duplicate_mails += len(copies) - 1
        at = recorded.get(event_id)
        later = sorted(copies, key=lambda m: m.session_started)[1:]
        if at is not None and any(m.session_started > at + CLOCK_SLACK_SECONDS for m in later):
            report.outside_window.append(event_id)
    return report
