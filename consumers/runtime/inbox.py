"""The inbox: which events a subscriber has applied, keyed by (subscriber, event id).

Table ``subscribers.inbox`` in the subscriber's own database. A projection writes its
inbox rows in the same transaction as its effect (:func:`claim` decides which events of
a batch are new); a side effect records its row right after the effect succeeded
(:func:`record`), and :func:`seen` skips events already recorded. :func:`purge` is
retention: rows older than the window are deleted in bounded batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox.events import DecodedEvent

# Key order: two consumers inserting overlapping batches cannot deadlock.
_CLAIM = text(
    """
INSERT INTO subscribers.inbox (subscriber, event_id, event_type)
SELECT :subscriber, event_id, event_type
FROM unnest(CAST(:event_ids AS uuid[]), CAST(:event_types AS text[])) AS t(event_id, event_type)
ORDER BY event_id
ON CONFLICT DO NOTHING
RETURNING event_id
"""
)
_SEEN = text(
    "SELECT event_id FROM subscribers.inbox"
    " WHERE subscriber = :subscriber AND event_id = ANY(CAST(:event_ids AS uuid[]))"
)
# Bounded: one short transaction per batch, oldest first (the (subscriber, processed_at)
# index serves the inner SELECT).
_PURGE = text(
    """
DELETE FROM subscribers.inbox WHERE (subscriber, event_id) IN (
    SELECT subscriber, event_id FROM subscribers.inbox
    WHERE subscriber = :subscriber
      AND processed_at < now() - make_interval(secs => :older_than)
    ORDER BY processed_at
    LIMIT :batch
)
"""
)


def _unique(events: Iterable[DecodedEvent]) -> list[DecodedEvent]:
    seen: dict[uuid.UUID, DecodedEvent] = {}
    for event in events:
        seen.setdefault(event.envelope.id, event)
    return list(seen.values())


async def claim(
    conn: AsyncConnection, subscriber: str, events: Sequence[DecodedEvent]
) -> set[uuid.UUID]:
    """Insert inbox rows for ``events`` in the caller's transaction; return the ids that
    were new (the others were applied before and must change nothing)."""
    batch = _unique(events)
    if not batch:
        return set()
    result = await conn.execute(
        _CLAIM,
        {
            "subscriber": subscriber,
            "event_ids": [e.envelope.id for e in batch],
            "event_types": [e.envelope.type for e in batch],
        },
    )
    return {row[0] for row in result}


async def seen(engine: AsyncEngine, subscriber: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The ids among ``ids`` already recorded for ``subscriber``."""
    if not ids:
        return set()
    async with engine.connect() as conn:
        result = await conn.execute(_SEEN, {"subscriber": subscriber, "event_ids": list(ids)})
        return {row[0] for row in result}


async def record(engine: AsyncEngine, subscriber: str, event: DecodedEvent) -> bool:
    """Record one event as done (its own transaction). False if it already was."""
    async with engine.begin() as conn:
        return bool(await claim(conn, subscriber, [event]))


async def purge(engine: AsyncEngine, subscriber: str, older_than: float, batch: int) -> int:
    """Delete one batch of rows older than ``older_than`` seconds; return how many."""
    async with engine.begin() as conn:
        result = await conn.execute(
            _PURGE, {"subscriber": subscriber, "older_than": older_than, "batch": batch}
        )
        return result.rowcount or 0
