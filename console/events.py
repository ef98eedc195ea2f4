"""Event lookup by id: its outbox rows, the inboxes that applied it, its dead letters."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool

from console.auth import Viewer
from console.web import ConsoleError, page
from outbox.models import DeadLetter, InboxEntry, OutboxRow

router = APIRouter()


def _facts(engine: Engine, feed_engine: Engine, event_id: uuid.UUID) -> dict[str, Any]:
    with engine.connect() as conn:
        outbox = conn.execute(
            select(
                OutboxRow.id,
                OutboxRow.event_type,
                OutboxRow.aggregate_type,
                OutboxRow.aggregate_id,
                OutboxRow.exchange,
                OutboxRow.routing_key,
                OutboxRow.created_at,
                OutboxRow.published_at,
                OutboxRow.attempts,
                OutboxRow.last_error,
            )
            .where(OutboxRow.event_id == event_id)
            .order_by(OutboxRow.id)
        ).mappings()
        outbox_rows = [dict(r) for r in outbox]
        dead = conn.execute(
            select(
                DeadLetter.id,
                DeadLetter.status,
                DeadLetter.failed_queue,
                DeadLetter.error_class,
                DeadLetter.dead_lettered_at,
            )
            .where(DeadLetter.message_id == str(event_id))
            .order_by(DeadLetter.id)
        ).mappings()
        dead_letters = [dict(r) for r in dead]
    with feed_engine.connect() as conn:
        inbox = conn.execute(
            select(InboxEntry.consumer, InboxEntry.event_type, InboxEntry.processed_at)
            .where(InboxEntry.event_id == event_id)
            .order_by(InboxEntry.consumer)
        ).mappings()
        inbox_rows = [dict(r) for r in inbox]
    return {"outbox": outbox_rows, "inbox": inbox_rows, "dead_letters": dead_letters}


@router.get("/events", response_class=HTMLResponse)
async def lookup(request: Request, operator: Viewer, id: str = "") -> Response:
    if not id.strip():
        return page(request, "event.html", event_id=None, facts=None)
    return RedirectResponse(f"/events/{id.strip()}", status_code=303)


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def show_event(request: Request, operator: Viewer, event_id: str) -> Response:
    try:
        parsed = uuid.UUID(event_id)
    except ValueError as exc:
        raise ConsoleError(404, "Not an event id", "Event ids are UUIDs.") from exc
    state = request.app.state
    facts = await run_in_threadpool(_facts, state.engine, state.feed_engine, parsed)
    return page(request, "event.html", event_id=str(parsed), facts=facts)
