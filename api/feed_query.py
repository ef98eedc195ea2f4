"""One page of the feed, read with raw psycopg and serialised straight to JSON bytes.

The feed is the hot read path, so it skips the ORM and SQLAlchemy's pool: a fixed-size
``psycopg_pool`` of autocommit connections (``QA_API_FEED_POOL_SIZE``) that stay open,
so each keeps its prepared statements; one prepared statement per filter shape
(PostgreSQL plans it once per connection), rows fetched as tuples and turned into the
response body by orjson. The body is exactly what ``FeedPage`` would serialise (same
field names and order, ISO 8601 times with ``Z`` for UTC); a test holds the two
together. A single statement needs no transaction, and returning an autocommit
connection costs no ``ROLLBACK`` round trip.

Why not the SQLAlchemy engine: its pool of 10 + 10 overflow opened and closed an
overflow connection per burst under 16 concurrent readers (a new connection, a new
prepare), and its greenlet bridge cost a few percent per request (measured, see
docs/BENCHMARKS.md). A connection broken by a database restart is dropped by the pool
when it comes back in a bad state, so one request per stale connection gets a 503 and
the pool refills in the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from api import cursor as cursors

_COLUMNS = (
    "question_id",
    "title",
    "subject",
    "grade",
    "answered",
    "answer_count",
    "created_at",
    "last_answer_at",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM feed.questions"
# Rows seeded by an answer that arrived before its question.created have no title yet.
_VISIBLE = "title IS NOT NULL AND created_at IS NOT NULL"
# Row comparison matches the (created_at DESC, question_id DESC) order of the indexes.
_AFTER = "(created_at, question_id) < (%(after_at)s, %(after_id)s)"
_ORDER = "ORDER BY created_at DESC, question_id DESC LIMIT %(limit)s"
_DUMP_OPTIONS = orjson.OPT_UTC_Z


@dataclass(frozen=True)
class FeedFilter:
    """What a page is filtered by; a ``None`` field does not filter."""

    subject: str | None = None
    grade: int | None = None
    answered: bool | None = None


def page_sql(where: FeedFilter, after: bool) -> str:
    """The statement for one filter shape: values are parameters, never text."""
    conditions = [_VISIBLE]
    if where.subject is not None:
        conditions.append("subject = %(subject)s")
    if where.grade is not None:
        conditions.append("grade = %(grade)s")
    if where.answered is not None:
        conditions.append("answered = %(answered)s")
    if after:
        conditions.append(_AFTER)
    return f"{_SELECT} WHERE {' AND '.join(conditions)} {_ORDER}"


def render(rows: list[tuple[Any, ...]], limit: int) -> bytes:
    """``{"items": [...], "next_cursor": ...}`` from up to ``limit + 1`` rows."""
    items = [dict(zip(_COLUMNS, row, strict=True)) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = cursors.encode(cursors.Position(last["created_at"], last["question_id"]))
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, option=_DUMP_OPTIONS)


class FeedReader:
    """Reads feed pages through its own pool of autocommit connections.

    ``conninfo`` is a libpq connection string (multi-host with ``target_session_attrs``
    works as everywhere else); ``open()`` starts filling the pool in the background
    (start-up never waits for the database), a request waits at most ``timeout`` seconds
    for a connection (``PoolTimeout``, a 503).
    """

    def __init__(
        self,
        conninfo: str,
        size: int,
        timeout: float,
        statement_timeout_ms: int,
        application_name: str,
    ) -> None:
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=size,
            max_size=size,
            timeout=timeout,
            open=False,
            name="feed",
            kwargs={
                "autocommit": True,
                "application_name": application_name,
                "options": f"-c statement_timeout={statement_timeout_ms}",
            },
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def page(self, where: FeedFilter, after: cursors.Position | None, limit: int) -> bytes:
        """The JSON body of one page, newest first."""
        params: dict[str, Any] = {
            "subject": where.subject,
            "grade": where.grade,
            "answered": where.answered,
            "limit": limit + 1,
        }
        if after is not None:
            params["after_at"] = after.created_at
            params["after_id"] = after.id
        sql = page_sql(where, after is not None)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params, prepare=True)
            rows = await cur.fetchall()
        return render(rows, limit)
