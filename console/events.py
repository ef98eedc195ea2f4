"""Event lookup by id: its journey (outbox row, publish, each subscriber's outcome).

The same facts as ``qa-ops events show`` (:mod:`outbox.journey`), without looking into the
retry tiers (that reads from the broker; the CLI does it).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from console.auth import Viewer
from console.web import ConsoleError, page
from outbox.journey import Journey, event_journey, known_subscribers

router = APIRouter()


def _journey(
    engine: Engine, feed_engine: Engine, event_id: uuid.UUID, delays: list[float]
) -> Journey:
    with engine.connect() as conn, feed_engine.connect() as feed_conn:
        return event_journey(conn, feed_conn, event_id, known_subscribers(delays))


@router.get("/events", response_class=HTMLResponse)
async def lookup(request: Request, operator: Viewer, id: str = "") -> Response:
    if not id.strip():
        return page(request, "event.html", event_id=None, journey=None)
    return RedirectResponse(f"/events/{id.strip()}", status_code=303)


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def show_event(request: Request, operator: Viewer, event_id: str) -> Response:
    try:
        parsed = uuid.UUID(event_id)
    except ValueError as exc:
        raise ConsoleError(404, "Not an event id", "Event ids are UUIDs.") from exc
    state = request.app.state
    journey = await run_in_threadpool(
        _journey, state.engine, state.feed_engine, parsed, state.settings.retry_delays
    )
    return page(request, "event.html", event_id=str(parsed), journey=journey)
