"""The overview page: outbox, relay and per-subscriber figures, refreshed by htmx."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from console import broker
from console.auth import Viewer
from console.web import page
from outbox import stats
from outbox.deadletter_groups import subscriber_of

router = APIRouter()
log = logging.getLogger("qa.console")
REFRESH_SECONDS = 2


@dataclass
class Overview:
    outbox: dict[str, Any]
    leaders: list[dict[str, Any]]
    shards: int
    subscribers: list[dict[str, Any]] = field(default_factory=list)
    broker_error: str | None = None


def _database_figures(
    engine: Engine, feed_engine: Engine, lock_key: int, shards: int
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int], dict[str, int]]:
    with engine.connect() as conn:
        outbox = stats.outbox_status(conn, failing_limit=5)
        leader = stats.relay_leaders(conn, lock_key, shards)
        dead = stats.dead_by_queue(conn)
    with feed_engine.connect() as conn:
        applied = stats.applied_last_minute(conn)
    return outbox, leader, dead, applied


async def gather(request: Request) -> Overview:
    state = request.app.state
    settings = state.settings
    shards = settings.relay_shards
    outbox, leaders, dead, applied = await run_in_threadpool(
        _database_figures, state.engine, state.feed_engine, settings.relay_lock_key, shards
    )
    outbox["publish_rate"] = round(outbox["published_last_minute"] / 60, 1)
    view = Overview(outbox, leaders, shards)
    queues: dict[str, broker.SubscriberQueues] = {}
    try:
        queues = await broker.subscriber_queues(
            state.http, settings.rabbitmq_management_url, broker.vhost_of(settings.amqp_url)
        )
    except (httpx.HTTPError, ValueError) as exc:
        view.broker_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    names = sorted(set(queues) | {subscriber_of(q) for q in dead} | set(applied))
    for name in names:
        q = queues.get(name) or broker.SubscriberQueues(name)
        view.subscribers.append(
            {
                "name": name,
                "ready": q.ready,
                "unacked": q.unacked,
                "consumers": q.consumers,
                "retry_tiers": q.tiers(),
                "dead_queue": q.dead_queue,
                "dead_letters": dead.get(f"{name}.events", 0),
                "apply_rate": round(applied.get(name, 0) / 60, 1),
                "known_to_broker": name in queues,
            }
        )
    return view


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, operator: Viewer) -> Response:
    view = await gather(request)
    return page(request, "overview.html", view=view, refresh=REFRESH_SECONDS)


@router.get("/overview/live", response_class=HTMLResponse)
async def overview_live(request: Request, operator: Viewer) -> Response:
    """The figures alone: htmx swaps them in every REFRESH_SECONDS."""
    view = await gather(request)
    return page(request, "overview_figures.html", view=view)
