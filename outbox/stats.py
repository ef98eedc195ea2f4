"""Figures operators watch: outbox backlog, relay leader, dead letters and apply rates.

Shared by ``qa-ops outbox status`` and the operators' console; plain SQL on one
connection, nothing cached.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

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
# 32 bits in classid and objid, objsubid 1).
LEADER_SQL = text(
    """
    SELECT a.pid, a.application_name, a.client_addr::text AS client_addr,
           a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND ((l.classid::bigint << 32) | l.objid::bigint) = :key
    """
)
DEAD_BY_QUEUE_SQL = text(
    "SELECT failed_queue, count(*) AS dead FROM feed.dead_letters"
    " WHERE status = 'dead' GROUP BY failed_queue"
)
APPLIED_SQL = text(
    "SELECT consumer, count(*) AS applied_last_minute FROM feed.inbox"
    " WHERE processed_at >= now() - interval '1 minute' GROUP BY consumer"
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


def relay_leader(conn: Connection, lock_key: int) -> dict[str, Any] | None:
    """The database session holding the relay's leader lock, or None (no active relay)."""
    row = conn.execute(LEADER_SQL, {"key": lock_key}).mappings().first()
    return dict(row) if row is not None else None


def dead_by_queue(conn: Connection) -> dict[str, int]:
    return {r.failed_queue: int(r.dead) for r in conn.execute(DEAD_BY_QUEUE_SQL)}


def applied_last_minute(feed_conn: Connection) -> dict[str, int]:
    """Events each consumer applied in the last minute (its inbox rows)."""
    return {r.consumer: int(r.applied_last_minute) for r in feed_conn.execute(APPLIED_SQL)}
