"""A subscriber cancelled at any moment stops, and applies everything exactly once.

The consumer's twin of ``test_relay_cancel.py``: the feed subscriber runs as a task and
is cancelled at random points (starting, declaring, consuming, filling a batch,
applying, settling, idle) many times while events keep arriving. Every cancellation must
end the task (a generous bound only turns a hang into a failure); afterwards one more
run applies what is left, and every event is in the inbox once and in the feed once.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from sqlalchemy import Engine, text

from consumers.runtime.service import run_subscriber
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    FEED,
    broker,
    inbox_ids,
    poll,
    publish_events,
    question_event,
)
from tests.support.stuck import pending_tasks

ROUNDS = 20
PER_ROUND = 40
STOP_BOUND_SECONDS = 30  # a hang detector, not a timing assertion


async def _run_and_cancel(settings: Settings, after: float) -> None:
    task = asyncio.create_task(run_subscriber(settings, FEED))
    await asyncio.sleep(after)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
    assert task in done, "the subscriber ignored its cancellation; tasks:\n" + pending_tasks()
    assert task.cancelled() or task.exception() is None, task.exception()


async def test_cancelled_at_random_points_stops_and_applies_once(
    settings: Settings, db: Engine
) -> None:
    rng = random.Random(uuid.uuid4().int)
    consumer_settings = Settings(**{**settings.model_dump(), "consumer_metrics_port": 0})
    ids: list[uuid.UUID] = []
    questions: list[str] = []
    async with broker(settings) as channel:
        for round_ in range(ROUNDS):
            events = [question_event() for _ in range(PER_ROUND)]
            await publish_events(channel, events)
            ids += [e.id for e in events]
            questions += [e.aggregate_id for e in events]
            after = rng.uniform(0, 0.05 if round_ % 3 == 0 else 0.8)
            await _run_and_cancel(consumer_settings, after)
        task = asyncio.create_task(run_subscriber(consumer_settings, FEED))
        try:
            await poll("every event applied", lambda: len(inbox_ids(db, ids)) == len(ids), 90)
        finally:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
            assert task in done, "the last subscriber ignored its cancellation"
    with db.connect() as conn:
        inbox = conn.execute(
            text(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM subscribers.inbox"
                " WHERE subscriber = 'feed' AND event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [str(i) for i in ids]},
        ).one()
        feed = conn.execute(
            text(
                "SELECT count(*) FROM feed.questions"
                " WHERE question_id = ANY(CAST(:ids AS uuid[])) AND title IS NOT NULL"
            ),
            {"ids": questions},
        ).scalar_one()
    assert inbox.n == inbox.d == len(ids)
    assert feed == len(questions)
