"""The chaos checker: compares what the system shows with what was really committed.

Ground truth is the write side (``qa.questions``, ``qa.answers``, ``qa.outbox`` - the
relay's retention must be long enough that no published row was deleted during the
run). The checker reads it directly from PostgreSQL after the run has quiesced and
reports, Jepsen-style:

* events committed (outbox rows) and the guarantee-1 cross-check (every question and
  answer has exactly one event and vice versa);
* **lost**: committed events never applied by the feed consumer (not in ``subscribers.inbox``)
  nor dead-lettered, and feed rows showing fewer answers than were committed;
* **duplicates applied**: feed rows counting more answers than were committed;
* duplicates delivered: event ids the broker delivered more than once to an observer
  queue bound to ``qa.events`` (what the relay re-published after crashes);
* unexpected: inbox entries or feed rows that match nothing committed;
* dead-lettered: real events in the dead-letter store (a transient fault must never
  dead-letter) and the poison messages the scenario injected on purpose;
* client view: acknowledged (201) writes missing from the database, and requests whose
  retries (same ``Idempotency-Key``) created more than one row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, text

from tests.chaos.faults import NOT_REACHED, FaultRecord
from tests.chaos.notifier_check import NotifierReport


@dataclass
class ClientLedger:
    """What the load generator was told: ids it got a 201 for, and its idempotency keys."""

    acked_questions: set[str] = field(default_factory=set)
    acked_answers: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    requests: int = 0
    retries: int = 0
    gave_up: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    questions: int = 0
    answers: int = 0
    events_committed: int = 0
    events_applied: int = 0
    lost_events: list[str] = field(default_factory=list)
    lost_details: list[str] = field(default_factory=list)
    unexpected_events: list[str] = field(default_factory=list)
    feed_missing_questions: list[str] = field(default_factory=list)
    feed_undercounted: list[tuple[str, int, int]] = field(default_factory=list)
    feed_overcounted: list[tuple[str, int, int]] = field(default_factory=list)
    feed_wrong_last_answer_at: list[str] = field(default_factory=list)
    feed_unexpected_rows: list[str] = field(default_factory=list)
    rows_without_event: int = 0
    events_without_row: int = 0
    duplicates_delivered: int | None = None
    dead_lettered_real: list[str] = field(default_factory=list)
    dead_lettered_poison: int = 0
    poison_injected: int = 0
    acked_missing: list[str] = field(default_factory=list)
    duplicate_writes: int = 0
    client: ClientLedger | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    notifier: NotifierReport | None = None

    @property
    def lost(self) -> int:
        """Events lost: never applied, plus answers the feed does not count."""
        # Two views of the same losses: events missing from the inbox, and what the feed
        # rows lack. Report the larger so one lost event is never counted twice.
        missing_answers = sum(truth - seen for _, truth, seen in self.feed_undercounted)
        projected = missing_answers + len(self.feed_missing_questions)
        return max(len(self.lost_events), projected)

    @property
    def duplicates_applied(self) -> int:
        return sum(seen - truth for _, truth, seen in self.feed_overcounted)

    @property
    def unexpected(self) -> int:
        return len(self.unexpected_events) + len(self.feed_unexpected_rows)

    def problems(self) -> list[str]:
        """Every violated guarantee, one line each; empty when the run was clean."""
        out = []
        if self.lost:
            out.append(f"lost {self.lost} (e.g. {self.lost_events[:3]})")
        if self.duplicates_applied:
            out.append(f"duplicates applied {self.duplicates_applied}")
        if self.unexpected:
            out.append(f"unexpected {self.unexpected}")
        if self.feed_wrong_last_answer_at:
            out.append(f"wrong last_answer_at on {len(self.feed_wrong_last_answer_at)} rows")
        if self.rows_without_event or self.events_without_row:
            out.append(
                f"guarantee 1: {self.rows_without_event} rows without event, "
                f"{self.events_without_row} events without row"
            )
        if self.dead_lettered_real:
            out.append(f"real events dead-lettered: {self.dead_lettered_real[:3]}")
        if self.dead_lettered_poison != self.poison_injected:
            out.append(
                f"poison dead-lettered {self.dead_lettered_poison} of {self.poison_injected}"
            )
        if self.acked_missing:
            out.append(f"acknowledged writes missing: {self.acked_missing[:3]}")
        if self.duplicate_writes:
            out.append(f"retries created {self.duplicate_writes} duplicate rows")
        for fault in self.faults:
            if NOT_REACHED in fault.note:
                out.append(f"fault not injected: {fault.describe()}")
            if fault.recovery_seconds is None:
                out.append(f"no recovery after {fault.describe()}")
            if fault.consumers_after is not None and min(fault.consumers_after.values()) < 1:
                out.append(f"queue without consumer after {fault.describe()}")
        if self.notifier is not None:
            out += self.notifier.problems()
        return out

    def render(self) -> str:
        lines = [
            "chaos report",
            f"  questions committed      {self.questions}",
            f"  answers committed        {self.answers}",
            f"  events committed         {self.events_committed}",
            f"  events applied (inbox)   {self.events_applied}",
            f"  LOST                     {self.lost}",
            f"  DUPLICATES APPLIED       {self.duplicates_applied}",
            f"  duplicates delivered     "
            f"{'n/a' if self.duplicates_delivered is None else self.duplicates_delivered}"
            "  (event ids seen more than once by an observer queue on qa.events)",
            f"  unexpected               {self.unexpected}",
            f"  dead-lettered            {len(self.dead_lettered_real)} real events, "
            f"{self.dead_lettered_poison}/{self.poison_injected} injected poison messages",
            f"  guarantee 1 mismatches   {self.rows_without_event + self.events_without_row}",
        ]
        if self.client is not None:
            c = self.client
            lines += [
                f"  client requests          {c.requests} ({c.retries} retries, "
                f"{c.gave_up} gave up) statuses {dict(sorted(c.statuses.items()))}",
                f"  acked but missing        {len(self.acked_missing)}",
                f"  duplicate writes         {self.duplicate_writes}",
            ]
        if self.faults:
            lines.append(f"  faults injected          {len(self.faults)}")
            lines += ["    " + fault.describe() for fault in self.faults]
            kinds = Counter(f.kind for f in self.faults)
            lines.append(f"  fault kinds              {dict(sorted(kinds.items()))}")
        if self.notifier is not None:
            lines += self.notifier.render()
        problems = self.problems()
        if self.lost_details:
            lines.append("  lost events (outbox state, times seen by the observer queue):")
            lines += ["    " + d for d in self.lost_details[:10]]
        lines.append("  verdict                  " + ("OK" if not problems else "FAILED"))
        lines += ["    - " + p for p in problems]
        return "\n".join(lines)


_TRUTH = text(
    """
SELECT q.id::text, count(a.id) AS answers, max(a.created_at) AS last_answer_at
FROM qa.questions q LEFT JOIN qa.answers a ON a.question_id = q.id
GROUP BY q.id
"""
)
_FEED = text(
    "SELECT question_id::text, title, answer_count, last_answer_at, answered FROM feed.questions"
)


def check(
    engine: Engine,
    *,
    consumer: str = "feed",
    delivered: Counter[str] | None = None,
    poison_ids: set[str] | None = None,
    client: ClientLedger | None = None,
    faults: list[FaultRecord] | None = None,
) -> Report:
    """Build the report from the database (read directly, not through any proxy)."""
    report = Report(client=client, faults=list(faults or []))
    poison_ids = poison_ids or set()
    report.poison_injected = len(poison_ids)
    with engine.connect() as conn:
        truth = {row[0]: (int(row[1]), row[2]) for row in conn.execute(_TRUTH)}
        feed = {row[0]: row[1:] for row in conn.execute(_FEED)}
        outbox = {
            str(row[0]): (row[1], row[2])
            for row in conn.execute(
                text(
                    "SELECT event_id, event_type, aggregate_id FROM qa.outbox"
                    " WHERE event_type IN ('question.created', 'answer.created')"
                )
            )
        }
        inbox = {
            str(row[0])
            for row in conn.execute(
                text("SELECT event_id FROM subscribers.inbox WHERE subscriber = :c"),
                {"c": consumer},
            )
        }
        dead = [
            row[0]
            for row in conn.execute(
                text("SELECT message_id FROM subscribers.dead_letters WHERE subscriber = :c"),
                {"c": consumer},
            )
            if row[0] is not None
        ]
        answer_ids = {str(r[0]) for r in conn.execute(text("SELECT id FROM qa.answers"))}
        answers_by_body = conn.execute(
            text("SELECT count(*) - count(DISTINCT body) FROM qa.answers")
        ).scalar_one()
        questions_by_title = conn.execute(
            text("SELECT count(*) - count(DISTINCT title) FROM qa.questions")
        ).scalar_one()
        answer_event_ids = {
            str(r[0])
            for r in conn.execute(
                text(
                    "SELECT (convert_from(body, 'UTF8')::jsonb -> 'data' ->> 'answer_id') "
                    "FROM qa.outbox WHERE event_type = 'answer.created'"
                )
            )
        }

    report.questions = len(truth)
    report.answers = sum(n for n, _ in truth.values())
    report.events_committed = len(outbox)
    report.events_applied = len(inbox & set(outbox))
    dead_real = [d for d in dead if d in outbox]
    report.dead_lettered_real = dead_real
    report.dead_lettered_poison = len([d for d in dead if d in poison_ids])
    report.lost_events = sorted(set(outbox) - inbox - set(dead_real))
    report.unexpected_events = sorted(inbox - set(outbox))
    if report.lost_events:
        report.lost_details = _lost_details(engine, report.lost_events[:10], delivered)

    question_events = {agg for etype, agg in outbox.values() if etype == "question.created"}
    report.rows_without_event = len(set(truth) - question_events) + len(
        answer_ids - answer_event_ids
    )
    report.events_without_row = len(question_events - set(truth)) + len(
        answer_event_ids - answer_ids
    )

    for qid, (count, last_at) in truth.items():
        row = feed.get(qid)
        if row is None or row[0] is None:
            report.feed_missing_questions.append(qid)
            continue
        _title, seen, seen_last, answered = row
        if seen < count:
            report.feed_undercounted.append((qid, count, seen))
        elif seen > count:
            report.feed_overcounted.append((qid, count, seen))
        elif not _same_instant(seen_last, last_at) or answered != (count > 0):
            report.feed_wrong_last_answer_at.append(qid)
    report.feed_unexpected_rows = sorted(set(feed) - set(truth))

    if delivered is not None:
        report.duplicates_delivered = sum(n - 1 for n in delivered.values() if n > 1)
    if client is not None:
        report.acked_missing = sorted(
            (client.acked_questions - set(truth)) | (client.acked_answers - answer_ids)
        )
        # The load generator makes every logical request's title/body unique.
        report.duplicate_writes = int(answers_by_body) + int(questions_by_title)
    return report


def _lost_details(engine: Engine, ids: list[str], delivered: Counter[str] | None) -> list[str]:
    """Where a lost event stopped: never published, published but not applied, ..."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT event_id::text, id, created_at, published_at, attempts, next_attempt_at, "
                "left(coalesce(last_error, ''), 120) FROM qa.outbox "
                "WHERE event_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
            ),
            {"ids": ids},
        ).all()
    out = []
    for event_id, row_id, created, published, attempts, next_at, error in rows:
        seen = "n/a" if delivered is None else delivered.get(event_id, 0)
        out.append(
            f"{event_id} outbox id {row_id} created {created:%H:%M:%S.%f} "
            f"published {published and f'{published:%H:%M:%S.%f}'} attempts {attempts} "
            f"next {next_at:%H:%M:%S} seen {seen} error {error!r}"
        )
    return out


def _same_instant(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 1e-3
