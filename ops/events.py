"""``qa-ops events``: an event's journey (outbox, publish, each subscriber), on demand.

Exit codes: 0 the event (or the question's events) was found, 1 nothing known about it
or a service unavailable, 2 usage error.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import ExitStack
from typing import Any

import typer
from rich.table import Table

from ops.common import console, engine, err_console, print_json
from outbox import retry_peek
from outbox.journey import (
    Journey,
    event_journey,
    events_of_question,
    known_subscribers,
    question_of,
)
from outbox.settings import Settings

app = typer.Typer(help="Follow events: outbox, publish, subscribers.", no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")
NoBrokerOpt = typer.Option(
    False, "--no-broker", help="Do not look into the retry tiers (database only)."
)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not a UUID: {value!r}", param_hint=what) from exc


def _journeys(
    event_ids: list[uuid.UUID] | None, question: uuid.UUID | None, broker: bool
) -> list[Journey]:
    settings = Settings()
    subscribers = known_subscribers(settings.retry_delays)
    sightings = None
    if broker:
        queues = [q for spec in subscribers for q in spec.retry_queues]
        try:
            sightings = asyncio.run(retry_peek.peek(settings.amqp_url.get_secret_value(), queues))
        except Exception as exc:  # never str() it: connection errors may carry the URL
            err_console.print(f"retry tiers not checked (broker unavailable: {type(exc).__name__})")
    same = settings.feed_url.get_secret_value() == settings.database_url.get_secret_value()
    with ExitStack() as stack:
        eng = stack.enter_context(engine())
        feed_eng = eng if same else stack.enter_context(engine(settings.feed_url))
        with eng.connect() as conn, feed_eng.connect() as feed_conn:
            if question is not None:
                event_ids = events_of_question(conn, question_of(conn, question))
            return [
                event_journey(conn, feed_conn, event_id, subscribers, sightings)
                for event_id in event_ids or []
            ]


def _when(value: Any) -> str:
    return "-" if value is None else str(value)


def _render(journey: Journey) -> None:
    outbox = journey.outbox or {}
    table = Table(title=f"event {journey.event_id}", show_header=False)
    table.add_row("type", str(outbox.get("event_type", "-")))
    table.add_row(
        "aggregate", f"{outbox.get('aggregate_type', '-')} {outbox.get('aggregate_id', '')}"
    )
    table.add_row("trace id", journey.trace_id or "-")
    table.add_row("outbox", journey.outbox_status)
    if journey.outbox_status == "purged":
        table.add_row("", "published, then deleted by retention (QA_RELAY_RETENTION_SECONDS)")
    if outbox:
        table.add_row("committed at", _when(outbox["committed_at"]))
        table.add_row("published at", _when(outbox["published_at"]))
        table.add_row("attempts", str(outbox["attempts"]))
        if outbox["last_error"]:
            table.add_row("last error", str(outbox["last_error"]))
            table.add_row("next attempt at", _when(outbox["next_attempt_at"]))
    console.print(table)
    subs = Table(title="subscribers")
    for col in (
        "subscriber",
        "status",
        "applied at",
        "retry tier",
        "attempts",
        "error",
        "dead letters",
    ):
        subs.add_column(col)
    for s in journey.subscribers:
        letters = ", ".join(f"#{d['id']} ({d['status']})" for d in s.dead_letters) or "-"
        subs.add_row(
            s.name,
            s.status,
            _when(s.applied_at),
            s.retry_queue or "-",
            "-" if s.attempts is None else str(s.attempts),
            s.error_class or "-",
            letters,
        )
    console.print(subs)


@app.command("show")
def show(
    event_id: str = typer.Argument(..., help="The event id (envelope id, AMQP message_id)."),
    as_json: bool = JsonOpt,
    no_broker: bool = NoBrokerOpt,
) -> None:
    """Where one event is: outbox row, publish, and each subscriber (applied, retrying,
    dead-lettered), with its trace id."""
    (journey,) = _journeys([_uuid(event_id, "EVENT_ID")], None, broker=not no_broker)
    if as_json:
        print_json(journey.as_dict())
    else:
        _render(journey)
    if not journey.found:
        err_console.print(f"no trace of event {event_id} (never written, or long purged)")
        raise typer.Exit(1)


@app.command("for-question")
def for_question(
    some_id: str = typer.Argument(..., help="A question id, or an answer id (its question)."),
    as_json: bool = JsonOpt,
    no_broker: bool = NoBrokerOpt,
) -> None:
    """The journeys of every event still known about a question (oldest first)."""
    journeys = _journeys(None, _uuid(some_id, "ID"), broker=not no_broker)
    if as_json:
        print_json([j.as_dict() for j in journeys])
    else:
        for journey in journeys:
            _render(journey)
    if not journeys:
        err_console.print(f"no events known for {some_id} (none written, or purged by retention)")
        raise typer.Exit(1)
