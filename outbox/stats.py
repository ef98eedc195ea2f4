"""Figures operators watch: outbox backlog, relay leader, dead letters and apply rates.

Shared by ``qa-ops outbox status`` and the operators' console; plain SQL on one
connection, nothing cached.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text

from outbox.models import InboxEntry

OUTBOX_SQL = text(
    """
    SELECT
      (SELECT count(*) FROM qa.outbox WHERE published_at IS NULL) AS pending,
      (SELECT extract(epoch FROM now() - min(created_at))
         FROM qa.outbox WHERE published_at IS NULL) AS oldest_pending_age_seconds,
      (SELECT count(*) FROM qa.outbox WHERE published_at IS NULL AND attempts > 0) AS failing,
      (SELECT count(*) FROM qa.outbox
         WHERE published_at >= now() - interval '1 minute') AS published_last_minute
    """
)
FAILING_SQL = text(
    """
    SELECT id, event_id, event_type, attempts, last_error, next_attempt_at
    FROM qa.outbox WHERE published_at IS NULL AND attempts > 0
    ORDER BY id LIMIT :limit
    """
)
# Session-level advisory locks on a bigint key show up split in pg_locks (high and low
# 32 bits in classid and objid, objsubid 1). Shard k's leadership lock is base + 2k
# (relay/shards.py; shard 0 is the one-relay key).
LEADERS_SQL = text(
    """
    SELECT k.n - 1 AS shard, a.pid, a.application_name, a.backend_start
    FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS k(key, n)
    JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((l.classid::bigint << 32) | l.objid::bigint) = k.key
    JOIN pg_stat_activity a ON a.pid = l.pid
    ORDER BY k.n
    """
)
DEAD_BY_QUEUE_SQL = text(
    "SELECT failed_queue, count(*) AS dead FROM subscribers.dead_letters"
    " WHERE status = 'dead' GROUP BY failed_queue"
)


def outbox_status(conn: Connection, failing_limit: int = 10) -> dict[str, Any]:
    """Pending rows, age of the oldest, failing rows (and the first few), published/min."""
    summary: dict[str, Any] = dict(conn.execute(OUTBOX_SQL).mappings().one())
    age = summary["oldest_pending_age_seconds"]
    summary["oldest_pending_age_seconds"] = round(float(age), 3) if age is not None else None
    summary["failing_rows"] = [
        dict(r) for r in conn.execute(FAILING_SQL, {"limit": failing_limit}).mappings()
    ]
    return summary


def relay_leaders(conn: Connection, lock_key: int, shards: int = 1) -> list[dict[str, Any]]:
    """The sessions holding the relays' leadership locks, one per led shard (shard 0 is
    the only one without sharding). A shard missing from the list has no active relay."""
    keys = [lock_key + 2 * shard for shard in range(shards)]
    return [dict(r) for r in conn.execute(LEADERS_SQL, {"keys": keys}).mappings()]


def dead_by_queue(conn: Connection) -> dict[str, int]:
    return {r.failed_queue: int(r.dead) for r in conn.execute(DEAD_BY_QUEUE_SQL)}


def applied_last_minute(feed_conn: Connection) -> dict[str, int]:
    """Events each consumer applied in the last minute (its inbox rows)."""
    query = (
        select(InboxEntry.subscriber, func.count())
        .where(InboxEntry.processed_at >= func.now() - timedelta(minutes=1))
        .group_by(InboxEntry.subscriber)
    )
    return {consumer: int(n) for consumer, n in feed_conn.execute(query)}
