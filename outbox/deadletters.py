"""The dead-letter store: find, replay and discard dead letters (behind ``qa-ops dlq``).

Replay goes through the outbox so that marking a letter replayed and scheduling its
re-delivery are ONE transaction: the ``status = 'dead'`` guard on the UPDATE makes a
second replay a no-op, and the outbox row re-delivers the original body and headers
through the default exchange straight to the queue that failed it, so no other
subscriber of ``qa.events`` sees it again. Every replay and discard writes an audit row.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from outbox import tracing
from outbox.headers import from_jsonable
from outbox.models import DeadLetter, DeadLetterAudit, OutboxRow
from outbox.subscribers import replayable_queues
from outbox.topology import (
    H_ATTEMPTS,
    H_DEAD_LETTER_ID,
    H_DISPOSITION,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FAILED_QUEUE,
    H_FIRST_FAILED_AT,
    H_HISTORY,
    H_ORIGINAL_ROUTING_KEY,
    H_REPLAYED_FROM,
    H_SUBSCRIBER,
    H_TRACEBACK,
)

STATUSES = ("dead", "replayed", "discarded")
REPLAY_AGGREGATE_TYPE = "replay"
# Why the message failed last time, and broker bookkeeping: a replay starts afresh
# (attempt counter reset) and keeps the story in x-history instead.
FAILURE_HEADERS = frozenset(
    {
        H_ERROR_CLASS,
        H_ERROR_MESSAGE,
        H_ATTEMPTS,
        H_TRACEBACK,
        H_DEAD_LETTER_ID,
        H_DISPOSITION,
        H_FIRST_FAILED_AT,
        H_FAILED_QUEUE,
        H_SUBSCRIBER,
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-last-death-exchange",
        "x-delivery-count",
    }
)
HISTORY_LIMIT = 20

SUMMARY_COLUMNS = (
    DeadLetter.id,
    DeadLetter.subscriber,
    DeadLetter.status,
    DeadLetter.dead_lettered_at,
    DeadLetter.event_type,
    DeadLetter.error_class,
    DeadLetter.disposition,
    DeadLetter.attempts,
    DeadLetter.failed_queue,
    DeadLetter.message_id,
)


@dataclass(frozen=True)
class Filters:
    """Which dead letters a listing or a bulk replay covers. ``status=None`` means all."""

    status: str | None = "dead"
    event_type: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    limit: int | None = None
    subscriber: str | None = None


@dataclass(frozen=True)
class ActionResult:
    """What a replay or discard did to one dead letter. ``ok`` drives the exit code."""

    id: int
    outcome: str
    ok: bool
    outbox_id: int | None = None
    note: str | None = None


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def replay_headers(letter: dict[str, Any]) -> dict[str, Any]:
    """The stored (JSON-form) headers of ``letter`` as they go out on replay: failure
    headers removed, ``x-replayed-from`` set, this failure appended to ``x-history``."""
    stored: dict[str, Any] = letter["headers"] or {}
    headers = {k: v for k, v in stored.items() if k not in FAILURE_HEADERS}
    previous = headers.get(H_HISTORY)
    history = list(previous) if isinstance(previous, list) else []
    if previous is not None and not isinstance(previous, list):
        history.append(previous)
    history.append(
        {
            "dead_letter_id": letter["id"],
            "error_class": letter["error_class"],
            "error_message": (letter["error_message"] or "")[:500],
            "disposition": letter["disposition"],
            "attempts": letter["attempts"],
            "failed_queue": letter["failed_queue"],
            "subscriber": letter.get("subscriber"),
            "first_failed_at": _iso(letter["first_failed_at"]),
            "dead_lettered_at": _iso(letter["dead_lettered_at"]),
            "replayed_at": datetime.now(UTC).isoformat(),
        }
    )
    headers[H_HISTORY] = history[-HISTORY_LIMIT:]
    headers[H_REPLAYED_FROM] = letter["id"]
    # The replay arrives through the default exchange under the queue's name; keep the
    # event's own routing key for anyone who reads it.
    if letter["routing_key"] and H_ORIGINAL_ROUTING_KEY not in headers:
        headers[H_ORIGINAL_ROUTING_KEY] = letter["routing_key"]
    return headers


def _where(filters: Filters) -> list[Any]:
    clauses: list[Any] = []
    if filters.status is not None:
        clauses.append(DeadLetter.status == filters.status)
    if filters.event_type is not None:
        clauses.append(DeadLetter.event_type == filters.event_type)
    if filters.error_class is not None:
        clauses.append(DeadLetter.error_class == filters.error_class)
    if filters.since is not None:
        clauses.append(DeadLetter.dead_lettered_at >= filters.since)
    if filters.subscriber is not None:
        clauses.append(DeadLetter.subscriber == filters.subscriber)
    return clauses


def list_letters(conn: Connection, filters: Filters) -> list[dict[str, Any]]:
    """Summaries of the matching dead letters, newest first."""
    query = select(*SUMMARY_COLUMNS).where(*_where(filters)).order_by(DeadLetter.id.desc())
    if filters.limit is not None:
        query = query.limit(filters.limit)
    return [dict(row) for row in conn.execute(query).mappings()]


def select_ids(conn: Connection, filters: Filters) -> list[int]:
    """Ids of the matching dead letters, oldest first (the order a bulk replay uses)."""
    query = select(DeadLetter.id).where(*_where(filters)).order_by(DeadLetter.id)
    if filters.limit is not None:
        query = query.limit(filters.limit)
    return list(conn.scalars(query))


def get_letter(conn: Connection, letter_id: int) -> dict[str, Any] | None:
    """Every column of one dead letter, or None."""
    row = conn.execute(select(DeadLetter.__table__).where(DeadLetter.id == letter_id))
    found = row.mappings().one_or_none()
    return dict(found) if found is not None else None


def audit_history(conn: Connection, letter_id: int) -> list[dict[str, Any]]:
    """The audit trail of one dead letter, oldest first."""
    table = DeadLetterAudit.__table__
    query = select(table).where(table.c.dead_letter_id == letter_id).order_by(table.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]


def _audit(
    conn: Connection, letter_id: int, action: str, actor: str, outcome: str, reason: str | None
) -> None:
    conn.execute(
        insert(DeadLetterAudit).values(
            dead_letter_id=letter_id,
            action=action,
            actor=actor[:64],
            reason=reason,
            outcome=outcome,
        )
    )


def event_id_for(message_id: str | None) -> tuple[uuid.UUID, str | None]:
    """The outbox event id for a replay: the original message id when it is a UUID
    (so the consumer's inbox dedups a replay of an already-applied event)."""
    if message_id:
        try:
            return uuid.UUID(message_id), None
        except ValueError:
            pass
    fresh = uuid.uuid4()
    return fresh, f"original message id {message_id!r} is not a UUID; replayed as {fresh}"


def _refusal(conn: Connection, letter_id: int, action: str, actor: str) -> ActionResult:
    """The letter was not in status 'dead': say why, and audit the attempt if it exists."""
    current = conn.scalar(select(DeadLetter.status).where(DeadLetter.id == letter_id))
    if current is None:
        return ActionResult(letter_id, "not found", ok=False)
    outcome = f"already {current}"
    # Repeating the same action is an idempotent no-op; the other one is refused.
    ok = current == {"replay": "replayed", "discard": "discarded"}[action]
    _audit(conn, letter_id, action, actor, f"no-op: {outcome}", None)
    return ActionResult(letter_id, outcome, ok=ok)


def _claim(conn: Connection, letter_id: int, new_status: str) -> dict[str, Any] | None:
    """Move a letter from 'dead' to ``new_status``; None if it was not 'dead' (or absent)."""
    stmt = (
        update(DeadLetter)
        .where(DeadLetter.id == letter_id, DeadLetter.status == "dead")
        .values(status=new_status, status_changed_at=func.now())
        .returning(*DeadLetter.__table__.c)
    )
    row = conn.execute(stmt).mappings().one_or_none()
    return dict(row) if row is not None else None


def replay(engine: Engine, letter_id: int, actor: str) -> ActionResult:
    """Replay one dead letter in one transaction (status, outbox row, audit row).

    The message keeps its trace context (``traceparent``/``tracestate``); with tracing
    on, the replay records a ``replay <queue>`` span linked to it, which ends after the
    commit (:func:`outbox.tracing.replay_span`).
    """
    with contextlib.ExitStack() as traced, engine.begin() as conn:
        target = conn.scalar(select(DeadLetter.failed_queue).where(DeadLetter.id == letter_id))
        if target is not None and target not in replayable_queues():
            outcome = f"refused: {target!r} is not a replayable consumer queue"
            _audit(conn, letter_id, "replay", actor, outcome, None)
            return ActionResult(letter_id, outcome, ok=False)
        letter = _claim(conn, letter_id, "replayed")
        if letter is None:
            return _refusal(conn, letter_id, "replay", actor)
        event_id, note = event_id_for(letter["message_id"])
        headers = replay_headers(letter)
        if tracing.enabled():  # the only cost while tracing is off
            headers.update(traced.enter_context(_replay_span(letter, event_id)))
        outbox_id = conn.scalar(
            insert(OutboxRow)
            .values(
                event_id=event_id,
                event_type=letter["event_type"] or "unknown",
                aggregate_type=REPLAY_AGGREGATE_TYPE,
                aggregate_id=str(letter_id),
                exchange="",
                routing_key=letter["failed_queue"],
                body=letter["body"],
                headers=headers,
            )
            .returning(OutboxRow.id)
        )
        outcome = f"replayed to queue {letter['failed_queue']} as outbox row {outbox_id}"
        if note:
            outcome += f" ({note})"
        _audit(conn, letter_id, "replay", actor, outcome, None)
    return ActionResult(letter_id, "replayed", ok=True, outbox_id=outbox_id, note=note)


def _replay_span(
    letter: dict[str, Any], event_id: uuid.UUID
) -> contextlib.AbstractContextManager[dict[str, str]]:
    attributes: dict[str, str | int] = {"qa.dead_letter.id": letter["id"]}
    if letter["event_type"]:
        attributes["qa.event.type"] = letter["event_type"]
    if letter.get("subscriber"):
        attributes["qa.subscriber"] = letter["subscriber"]
    headers = from_jsonable(letter["headers"] or {})
    return tracing.replay_span(event_id, letter["failed_queue"], headers, attributes)


def discard(engine: Engine, letter_id: int, actor: str, reason: str) -> ActionResult:
    """Discard one dead letter (it is kept, marked discarded, and never replayed)."""
    with engine.begin() as conn:
        letter = _claim(conn, letter_id, "discarded")
        if letter is None:
            return _refusal(conn, letter_id, "discard", actor)
        _audit(conn, letter_id, "discard", actor, "discarded", reason)
    return ActionResult(letter_id, "discarded", ok=True)


def preview(conn: Connection, letter_id: int) -> ActionResult:
    """What :func:`replay` would do, without changing anything (``--dry-run``)."""
    letter = get_letter(conn, letter_id)
    if letter is None:
        return ActionResult(letter_id, "not found", ok=False)
    if letter["status"] != "dead":
        status = letter["status"]
        return ActionResult(letter_id, f"already {status}", ok=status == "replayed")
    if letter["failed_queue"] not in replayable_queues():
        refused = f"refused: {letter['failed_queue']!r} is not a replayable consumer queue"
        return ActionResult(letter_id, refused, ok=False)
    _, note = event_id_for(letter["message_id"])
    return ActionResult(
        letter_id, f"would replay to queue {letter['failed_queue']}", ok=True, note=note
    )
