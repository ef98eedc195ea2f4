"""Inbox retention: rows past QA_INBOX_RETENTION_SECONDS go, in bounded batches; a
duplicate inside the window is still absorbed (real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from consumers.feed import SUBSCRIBER as FEED
from consumers.runtime.retention import purge_expired
from consumers.runtime.service import make_engine
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    answer_event,
    broker,
    feed_row,
    inbox_ids,
    poll,
    publish_events,
    question_event,
    running_consumer,
)

DAY = 86400.0


def _insert(db: Engine, subscriber: str, age: timedelta, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers.inbox (subscriber, event_id, event_type, processed_at)"
                " SELECT :s, unnest(CAST(:ids AS uuid[])), 'test', :at"
            ),
            {"s": subscriber, "ids": ids, "at": datetime.now(UTC) - age},
        )
    return ids


async def test_retention_deletes_only_rows_past_the_window_in_batches(
    settings: Settings, db: Engine
) -> None:
    name = f"rt_{uuid.uuid4().hex[:10]}"
    other = f"rt_{uuid.uuid4().hex[:10]}"
    old = _insert(db, name, timedelta(days=8), 25)
    edge = _insert(db, name, timedelta(days=6, hours=23), 5)  # inside the 7-day window
    fresh = _insert(db, name, timedelta(minutes=1), 5)
    others_old = _insert(db, other, timedelta(days=30), 5)  # another subscriber's rows
    engine = make_engine(FEED, settings)
    try:
        deleted = await purge_expired(engine, name, 7 * DAY, batch=10)  # three batches
    finally:
        await engine.dispose()
    assert deleted == 25
    assert inbox_ids(db, old, name) == set()
    assert inbox_ids(db, edge + fresh, name) == set(edge + fresh)
    assert inbox_ids(db, others_old, other) == set(others_old)


async def test_duplicate_inside_the_window_is_absorbed_after_a_retention_pass(
    settings: Settings, db: Engine
) -> None:
    """The consumer runs retention at start-up; an event applied a day ago (inside the
    window) is not applied again when a copy arrives, an expired row is gone."""
    qid = uuid.uuid4()
    question, answer = question_event(qid), answer_event(qid)
    expired = _insert(db, "feed", timedelta(days=8), 3)
    async with broker(settings) as channel, running_consumer(settings):
        await publish_events(channel, [question, answer])
        await poll("applied", lambda: inbox_ids(db, [question.id, answer.id]))
        await poll("expired rows purged", lambda: not inbox_ids(db, expired))
    # Age the applied rows by a day: still inside the 7-day window.
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE subscribers.inbox SET processed_at = now() - interval '1 day'"
                " WHERE subscriber = 'feed' AND event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [question.id, answer.id]},
        )
    sentinel = question_event()
    expired_again = _insert(db, "feed", timedelta(days=9), 2)
    async with broker(settings) as channel, running_consumer(settings):
        # Retention has run (its marker rows are gone) before the copy arrives.
        await poll("retention pass", lambda: not inbox_ids(db, expired_again))
        await publish_events(channel, [answer, sentinel])  # the copy, then a marker
        await poll("sentinel applied", lambda: inbox_ids(db, [sentinel.id]))
    row = feed_row(db, qid)
    assert row is not None and row["answer_count"] == 1
    assert inbox_ids(db, [answer.id]) == {answer.id}
