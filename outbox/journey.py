"""An event's journey: outbox row, publish, and each subscriber's outcome, on demand.

This answers "why is my answer not in the feed?" from what the system already keeps:
the outbox row (``qa.outbox``; gone after ``QA_RELAY_RETENTION_SECONDS`` once
published), each subscriber's inbox (``subscribers.inbox``: applied, and when), the
dead-letter store (``subscribers.dead_letters``) and, when given, what waits in the retry
tiers right now (:mod:`outbox.retry_peek`). Used by ``qa-ops events`` and the operators' console.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from outbox import subscribers as registry
from outbox.retry_peek import Sighting
from outbox.topology import retry_queue_name
from outbox.tracing import trace_id_of


@dataclass(frozen=True)
class SubscriberSpec:
    """What the journey needs to know of a subscriber: its inbox name and its queues."""

    name: str
    queue: str
    retry_queues: tuple[str, ...]


def known_subscribers(retry_delays: list[float]) -> list[SubscriberSpec]:
    """The subscribers of ``qa.events`` that keep an inbox (every registered one)."""
    return [
        SubscriberSpec(s.name, s.queue, tuple(retry_queue_name(s.name, d) for d in retry_delays))
        for s in registry.discover().values()
    ]


@dataclass
class SubscriberState:
    name: str
    # applied | retrying | dead-lettered | discarded | waiting (published or replayed, not
    # applied yet) | not published
    status: str
    applied_at: datetime | None = None
    retry_queue: str | None = None
    attempts: int | None = None
    error_class: str | None = None
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Journey:
    event_id: uuid.UUID
    # pending | failing | published | purged (deleted by retention after publishing) | unknown
    outbox_status: str
    outbox: dict[str, Any] | None
    trace_id: str | None
    subscribers: list[SubscriberState]

    @property
    def found(self) -> bool:
        return self.outbox is not None or any(
            s.applied_at or s.dead_letters or s.retry_queue for s in self.subscribers
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["found"] = self.found
        return out


OUTBOX_SQL = text(
    """
    SELECT id, event_type, aggregate_type, aggregate_id, exchange, routing_key, headers,
           created_at AS committed_at, attempts, last_error, next_attempt_at, published_at
    FROM qa.outbox WHERE event_id = :event_id ORDER BY id
    """
)
INBOX_SQL = text(
    "SELECT subscriber, processed_at FROM subscribers.inbox WHERE event_id = :event_id"
)
DEAD_SQL = text(
    """
    SELECT id, failed_queue, status, error_class, error_message, disposition, attempts,
           dead_lettered_at, headers
    FROM subscribers.dead_letters WHERE message_id = :message_id ORDER BY id
    """
)


def _outbox_status(rows: list[dict[str, Any]], seen_downstream: bool) -> str:
    if not rows:
        return "purged" if seen_downstream else "unknown"
    # A replayed dead letter adds a second row (to the default exchange): the newest wins.
    row = rows[-1]
    if row["published_at"] is not None:
        return "published"
    return "failing" if row["attempts"] else "pending"


def event_journey(
    conn: Connection,
    feed_conn: Connection,
    event_id: uuid.UUID,
    subscribers: list[SubscriberSpec],
    sightings: dict[str, list[Sighting]] | None = None,
) -> Journey:
    """Gather what is known about ``event_id``. ``sightings`` from :func:`retry_peek.peek`
    (``None``: the retry tiers were not looked at)."""
    rows = [dict(r) for r in conn.execute(OUTBOX_SQL, {"event_id": event_id}).mappings()]
    inbox = {
        r["subscriber"]: r["processed_at"]
        for r in feed_conn.execute(INBOX_SQL, {"event_id": event_id}).mappings()
    }
    dead = [dict(r) for r in conn.execute(DEAD_SQL, {"message_id": str(event_id)}).mappings()]
    seen = (sightings or {}).get(str(event_id), [])
    published = any(r["published_at"] is not None for r in rows)
    states = []
    for spec in subscribers:
        state = SubscriberState(spec.name, "not published")
        letters = [d for d in dead if d["failed_queue"] == spec.queue]
        state.dead_letters = [{k: v for k, v in d.items() if k != "headers"} for d in letters]
        retrying = [s for s in seen if s.queue in spec.retry_queues]
        if spec.name in inbox:
            state.status, state.applied_at = "applied", inbox[spec.name]
        elif retrying:
            state.status = "retrying"
            state.retry_queue = retrying[-1].queue
            state.attempts = retrying[-1].attempts
            state.error_class = retrying[-1].error_class
        elif any(d["status"] == "dead" for d in letters):
            state.status = "dead-lettered"
            state.error_class = letters[-1]["error_class"]
            state.attempts = letters[-1]["attempts"]
        elif letters and all(d["status"] == "discarded" for d in letters):
            state.status = "discarded"
        elif published or letters:
            state.status = "waiting"
        states.append(state)
    downstream = bool(inbox or dead or seen)
    headers = rows[-1]["headers"] if rows else (dead[-1]["headers"] if dead else None)
    if headers is None and seen:
        headers = seen[-1].headers
    outbox = None
    if rows:
        outbox = {k: v for k, v in rows[-1].items() if k != "headers"}
        outbox["rows"] = len(rows)
    return Journey(
        event_id=event_id,
        outbox_status=_outbox_status(rows, downstream),
        outbox=outbox,
        trace_id=trace_id_of(headers),
        subscribers=states,
    )


QUESTION_OF_ANSWER_SQL = text("SELECT question_id FROM qa.answers WHERE id = :id")
EVENTS_OF_QUESTION_SQL = text(
    """
    SELECT DISTINCT ON (event_id) event_id, id FROM qa.outbox
    WHERE aggregate_type = 'question' AND aggregate_id = :qid ORDER BY event_id, id
    """
)
# Dead letters outlive the outbox rows: find them by the question id in their body.
DEAD_OF_QUESTION_SQL = text(
    """
    SELECT DISTINCT message_id FROM subscribers.dead_letters
    WHERE message_id IS NOT NULL AND position(convert_to(:qid, 'UTF8') IN body) > 0
    """
)


def question_of(conn: Connection, some_id: uuid.UUID) -> uuid.UUID:
    """The question id itself, or the question of an answer id."""
    question = conn.execute(QUESTION_OF_ANSWER_SQL, {"id": some_id}).scalar()
    return question if question is not None else some_id


def events_of_question(conn: Connection, question_id: uuid.UUID) -> list[uuid.UUID]:
    """Event ids about ``question_id`` still known: outbox rows (until retention purges
    them) and dead letters whose body names the question. Oldest first."""
    rows = conn.execute(EVENTS_OF_QUESTION_SQL, {"qid": str(question_id)}).all()
    ids = [event_id for event_id, _ in sorted(rows, key=lambda r: r[1])]
    for (message_id,) in conn.execute(DEAD_OF_QUESTION_SQL, {"qid": str(question_id)}):
        try:
            event_id = uuid.UUID(message_id)
        except ValueError:
            continue
        if event_id not in ids:
            ids.append(event_id)
    return ids
