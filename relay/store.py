"""The relay's SQL on ``qa.outbox``: claim, mark, retention and backlog figures.

Raw psycopg on purpose: this is the hot path and rows are moved as tuples, never ORM
objects. Claiming scans for unpublished rows (served by the partial index
``ix_outbox_pending``), never an ``id > last_id`` high-water mark, so a row committed
late by a slow transaction is still found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from pydantic import SecretStr

from outbox.db import libpq_dsn

# The event id comes as text (the AMQP message id), and empty headers as NULL: measured,
# with the binary protocol and a NamedTuple row this is 4-5 us of relay CPU per row
# instead of 12-16 (UUID objects, JSON-parsing '{}', hex-decoding bytea, a frozen
# dataclass), on a path that handles every event.
_CLAIM_COLUMNS = """id, event_id::text, event_type, exchange, routing_key, body,
       NULLIF(headers, '{}'::jsonb), created_at"""
CLAIM_SQL = f"""
SELECT {_CLAIM_COLUMNS}
FROM qa.outbox
WHERE published_at IS NULL AND next_attempt_at <= now()
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
# One shard's rows (QA_RELAY_SHARDS > 1), walked in id order on ix_outbox_pending_shard.
CLAIM_SHARD_SQL = f"""
SELECT {_CLAIM_COLUMNS}
FROM qa.outbox
WHERE shard = %s AND published_at IS NULL AND next_attempt_at <= now()
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
# Rows written while QA_RELAY_SHARDS was larger than now would never be claimed: give
# them the shard they hash to today (same md5 as outbox.uow.shard_of).
REHOME_SQL = """
UPDATE qa.outbox
SET shard = (('x' || left(md5(aggregate_id), 8))::bit(32)::bigint %% %s)
WHERE published_at IS NULL AND shard >= %s
"""
MARK_PUBLISHED_SQL = "UPDATE qa.outbox SET published_at = now() WHERE id = ANY(%s::bigint[])"
# Backoff doubles per attempt from 1 s and is capped, so a poisoned row is retried
# rarely and never blocks the rows behind it (they are claimed while it waits).
MARK_FAILED_SQL = """
UPDATE qa.outbox
SET attempts = attempts + 1,
    last_error = %s,
    next_attempt_at = now() + make_interval(secs => least(%s, power(2, least(attempts, 30))))
WHERE id = ANY(%s::bigint[])
"""
PURGE_SQL = """
DELETE FROM qa.outbox WHERE id IN (
  SELECT id FROM qa.outbox
  WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => %s)
  ORDER BY published_at
  LIMIT %s
)
"""
BACKLOG_SQL = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8,
       count(*) FILTER (WHERE attempts > 0)
FROM qa.outbox WHERE published_at IS NULL
"""

MAX_BACKOFF_SECONDS = 300.0
MAX_ERROR_CHARS = 500


class PendingRow(NamedTuple):
    """One claimed outbox row, as stored (the event id as text, empty headers as None)."""

    id: int
    event_id: str
    event_type: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] | None
    created_at: datetime


async def connect(
    url: str | SecretStr, *, application_name: str, autocommit: bool, idle_tx_timeout_ms: int
) -> psycopg.AsyncConnection[Any]:
    """A relay connection. ``idle_in_transaction_session_timeout`` bounds any claim left
    open by a stalled process; TCP keepalives notice a dead peer without a query, on both
    ends: the server-side ones (``tcp_keepalives_*``, kernel defaults are two hours) make
    PostgreSQL end the session, releasing its advisory locks, about 11 s after the relay's
    host dies or is cut off (a killed process's sockets are closed at once by its kernel)."""
    return await psycopg.AsyncConnection.connect(
        libpq_dsn(url),
        autocommit=autocommit,
        application_name=application_name,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        options=f"-c idle_in_transaction_session_timeout={idle_tx_timeout_ms}"
        " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
    )


async def claim(
    conn: psycopg.AsyncConnection[Any], limit: int, shard: int | None = None
) -> list[PendingRow]:
    """Lock up to ``limit`` due, unpublished rows in id order (inside the caller's tx);
    only ``shard``'s rows when given (None: every row, the one-shard relay)."""
    async with conn.cursor(binary=True, row_factory=_pending_row) as cur:
        if shard is None:
            await cur.execute(CLAIM_SQL, (limit,))
        else:
            await cur.execute(CLAIM_SHARD_SQL, (shard, limit))
        return await cur.fetchall()


def _pending_row(cursor: Any) -> Any:
    return PendingRow._make  # psycopg row factory: one tuple subclass per row


async def mark_published(conn: psycopg.AsyncConnection[Any], ids: list[int]) -> None:
    """One statement for the whole batch."""
    if ids:
        await conn.execute(MARK_PUBLISHED_SQL, (ids,))


async def mark_failed(conn: psycopg.AsyncConnection[Any], failures: dict[int, str]) -> None:
    """attempts+1, last_error, growing next_attempt_at; one statement per distinct error."""
    by_error: dict[str, list[int]] = {}
    for row_id, error in failures.items():
        by_error.setdefault(truncate_error(error), []).append(row_id)
    for error, ids in by_error.items():
        await conn.execute(MARK_FAILED_SQL, (error, MAX_BACKOFF_SECONDS, ids))


def truncate_error(error: str) -> str:
    """One line, bounded, NUL-free (PostgreSQL text rejects NUL)."""
    line = " ".join(error.replace("\x00", "").split())
    return line[:MAX_ERROR_CHARS]


async def purge_published(
    conn: psycopg.AsyncConnection[Any], retention_seconds: float, batch: int
) -> int:
    """Delete published rows older than the retention, ``batch`` rows per transaction.

    ``conn`` must be in autocommit mode so each batch commits on its own and no long
    transaction holds back vacuum. Returns the number of rows deleted.
    """
    total = 0
    while True:
        cur = await conn.execute(PURGE_SQL, (retention_seconds, batch))
        total += cur.rowcount
        if cur.rowcount < batch:
            return total


async def rehome(conn: psycopg.AsyncConnection[Any], shards: int) -> int:
    """Move pending rows of shards that no longer exist to their current shard."""
    cur = await conn.execute(REHOME_SQL, (shards, shards))
    return cur.rowcount


async def backlog(conn: psycopg.AsyncConnection[Any]) -> tuple[int, float, int]:
    """(pending rows, age in seconds of the oldest pending row, failing rows)."""
    cur = await conn.execute(BACKLOG_SQL)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), float(row[1]), int(row[2])
