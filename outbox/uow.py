"""Unit of work: one database transaction; adding an event writes its outbox row in it.

``async with uow:`` rolls back unless :meth:`UnitOfWork.commit` was called. Nothing
here commits on its own and nothing here talks to the broker.

Rows given to :meth:`UnitOfWork.insert` and the outbox rows of :meth:`add_event` go to
the database together in ONE statement at the next flush (data-modifying CTEs), so the
outbox costs no extra round trip on the write path. ORM entities given to :meth:`add`
are flushed first, by the session, as usual.

At :meth:`UnitOfWork.commit` that statement and the ``COMMIT`` travel in one flight
(psycopg pipeline mode on the session's own connection): one round trip instead of two.
An error of the statement aborts the flight, so the ``COMMIT`` is not applied and the
transaction is rolled back as usual when the unit of work exits. Likewise
:meth:`UnitOfWork.begin_with` sends the ``BEGIN`` and the transaction's first statement
in one flight (an answer: ``BEGIN`` + the question's ``UPDATE ... RETURNING``, then its
rows + ``COMMIT``: two round trips).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Dialect, Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert

from outbox import tracing
from outbox.errors import NotReplicated
from outbox.events import Envelope
from outbox.models import OutboxRow
from outbox.topology import EVENTS_EXCHANGE


def shard_of(aggregate_id: str, shards: int) -> int:
    """The relay shard of an aggregate: stable across processes and restarts (md5, not
    Python's salted ``hash``), the same in SQL:
    ``('x' || left(md5(aggregate_id), 8))::bit(32)::bigint % shards``."""
    if shards <= 1:
        return 0
    return (
        int(hashlib.md5(aggregate_id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % shards
    )


def outbox_values(
    envelope: Envelope, headers: dict[str, Any] | None = None, shards: int = 1
) -> dict[str, Any]:
    """Column values of the outbox row that publishes ``envelope`` to ``qa.events``."""
    return {
        "shard": shard_of(envelope.aggregate_id, shards),
        "event_id": envelope.id,
        "event_type": envelope.type,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_id,
        "exchange": EVENTS_EXCHANGE,
        "routing_key": envelope.type,
        "body": envelope.to_bytes(),
        "headers": headers or {},
    }


OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
# PostgreSQL's WARNING when a commit's wait for a synchronous standby is cancelled
# (pg_cancel_backend; the statement timeout does not apply to it): "canceling wait for
# synchronous replication due to user request" / "The transaction has already committed
# locally, but might not have been replicated to the standby." (English server messages.)
_SYNC_REP_CANCELLED = "canceling wait for synchronous replication"


def outbox_insert(envelope: Envelope) -> Insert:
    """The INSERT of ``envelope``'s outbox row, for a caller running its own (synchronous)
    transaction, e.g. ``qa-ops users``. Same row as :meth:`UnitOfWork.add_event`."""
    return insert(OUTBOX).values(outbox_values(envelope)).inline()


Shape = tuple[tuple[Table, tuple[str, ...]], ...]


@lru_cache(maxsize=128)
def _statement_of(shape: Shape) -> Insert:
    """``WITH w0 AS (INSERT ...), w1 AS (INSERT ...) INSERT ...``: every row, one round trip.

    PostgreSQL runs every data-modifying CTE exactly once even when nothing reads it, and
    constraint errors (e.g. a foreign key) surface from the statement as usual. No
    RETURNING: the API's role needs only INSERT on the outbox (least privilege).

    Built once per shape (tables and columns), with bind parameters ``r<row>_<column>``:
    a statement object reused across requests keeps its memoised cache key, so each
    execution skips building the statement and its cache key anew (the SQL it sends is
    the same).
    """

    def values(n: int, table: Table, columns: tuple[str, ...]) -> dict[str, Any]:
        return {c: bindparam(f"r{n}_{c}", type_=table.c[c].type) for c in columns}

    *first, (last_table, last_columns) = shape
    # inline(): no pre-fetch or RETURNING of generated keys.
    statement = insert(last_table).values(values(len(first), last_table, last_columns)).inline()
    if first:
        ctes = [
            insert(t).values(values(n, t, columns)).cte(f"w{n}")
            for n, (t, columns) in enumerate(first)
        ]
        statement = statement.add_cte(*ctes)
    return statement


def _one_statement(rows: list[tuple[Table, dict[str, Any]]]) -> tuple[Insert, dict[str, Any]]:
    """The statement inserting ``rows`` and its parameters."""
    shape = tuple((table, tuple(values)) for table, values in rows)
    params = {f"r{n}_{c}": v for n, (_, values) in enumerate(rows) for c, v in values.items()}
    return _statement_of(shape), params


# Per bind parameter of a compiled statement: its name in the SQL, the key its value is
# given under, its bind processor, its own value (literals such as the ``+ 1`` of an
# UPDATE carry one; a parameter without a value must be given, or KeyError).
_MISSING = object()
Binds = tuple[tuple[str, str, Callable[[Any], Any] | None, Any], ...]


@lru_cache(maxsize=128)
def _compiled(statement: Executable, dialect: Dialect) -> tuple[str, Binds]:
    """``statement``'s SQL for ``dialect`` and what its parameters need, so that the
    driver gets the values SQLAlchemy would send (e.g. JSONB values wrapped for psycopg)."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    binds = tuple(
        (
            name,
            bind.key,
            bind.type.dialect_impl(dialect).bind_processor(dialect),
            _MISSING if bind.required else bind.value,
        )
        for bind, name in compiled.bind_names.items()
    )
    return compiled.string, binds


def _bound(
    statement: Executable, params: dict[str, Any], dialect: Dialect
) -> tuple[str, dict[str, Any]]:
    """``statement`` as SQL and parameters for the driver (built once per statement)."""
    sql, binds = _compiled(statement, dialect)
    values = {}
    for name, key, process, own in binds:
        value = params[key] if key in params or own is _MISSING else own
        values[name] = value if process is None else process(value)
    return sql, values


def _driver_sql(
    rows: list[tuple[Table, dict[str, Any]]], dialect: Dialect
) -> tuple[str, dict[str, Any]]:
    """The one statement inserting ``rows``, as SQL and parameters for the driver."""
    statement, params = _one_statement(rows)
    return _bound(statement, params, dialect)


class UnitOfWork:
    """One transaction over the write model and the outbox."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], shards: int = 1) -> None:
        self._sessions = sessions
        self._shards = shards
        self._session: AsyncSession | None = None
        self._committed = False
        self._rows: list[tuple[Table, dict[str, Any]]] = []

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._committed = False
        self._rows = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if not self._committed:
                await session.rollback()
        finally:
            await session.close()
            self._session = None

    def add(self, entity: object) -> None:
        """Add an ORM entity (flushed by the session before the pending rows)."""
        self.session.add(entity)

    def insert(self, table: Table, values: dict[str, Any]) -> None:
        """Insert a row at the next flush, in the same statement as the outbox rows."""
        self._rows.append((table, values))

    def add_event(self, envelope: Envelope) -> None:
        """Write ``envelope`` to the outbox in this transaction (at the next flush/commit).

        With tracing on, the event's ``create`` span context goes into the row's headers.
        """
        headers = None
        if tracing.enabled():
            headers = tracing.create_span_headers(
                envelope.id, envelope.type, EVENTS_EXCHANGE, envelope.type
            )
        self._rows.append((OUTBOX, outbox_values(envelope, headers, self._shards)))

    async def begin_with(self, statement: Executable, params: dict[str, Any]) -> Any | None:
        """Run ``statement`` (e.g. an ``UPDATE ... RETURNING``) and return its first row,
        ``None`` without one.

        As the transaction's first statement, its ``BEGIN`` travels in the same flight
        (one round trip instead of two): the connection is put in autocommit for this
        transaction (SQLAlchemy's ``AUTOCOMMIT`` isolation, reset when the connection
        goes back to the pool) so psycopg sends no ``BEGIN`` of its own, and the
        explicit one keeps every later statement in the transaction until
        :meth:`commit` or the rollback on exit. Later in a transaction, it is an
        ordinary statement. Rows come as the driver returns them (named tuples).
        """
        session = self.session
        if session.in_transaction():
            return (await session.execute(statement, params)).first()
        conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        sql, bound = _bound(statement, params, conn.dialect)
        cursor = driver.cursor(row_factory=namedtuple_row)
        async with _flight(conn, raw):
            await driver.execute(b"BEGIN")
            await cursor.execute(sql, bound)
        return await cursor.fetchone()

    async def flush(self) -> None:
        """Send pending entities and rows to the database (still uncommitted)."""
        await self.session.flush()
        if self._rows:
            rows, self._rows = self._rows, []
            statement, params = _one_statement(rows)
            await self.session.execute(statement, params)

    async def commit(self) -> None:
        """Commit; raise :class:`NotReplicated` when PostgreSQL committed locally but its
        wait for a synchronous standby was cancelled (the write is not confirmed durable)."""
        session = self.session
        await session.flush()
        rows, self._rows = self._rows, []
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        cancelled: list[str] = []

        def handler(notice: Any) -> None:  # read it now: it is only valid in the callback
            if (notice.message_primary or "").startswith(_SYNC_REP_CANCELLED):
                cancelled.append(notice.message_detail or notice.message_primary)

        driver.add_notice_handler(handler)
        try:
            if rows:
                async with _flight(conn, raw):
                    # The server skips the COMMIT when the statement fails; the
                    # transaction then stays open, failed, for the rollback on exit.
                    await driver.execute(*_driver_sql(rows, conn.dialect))
                    await driver.execute(b"COMMIT")
            # The transaction is over when rows were sent; the session only ends its own.
            await session.commit()
        finally:
            driver.remove_notice_handler(handler)
        self._committed = True
        if cancelled:
            raise NotReplicated(
                "committed on the primary, but the wait for the synchronous standby was"
                f" cancelled: {cancelled[0]}"
            )


@asynccontextmanager
async def _flight(conn: AsyncConnection, raw: PoolProxiedConnection) -> AsyncIterator[None]:
    """Statements queued in the block go in one flight (psycopg pipeline mode), sent and
    answered when it ends; their first error is raised then.

    Errors come from psycopg itself, not wrapped by SQLAlchemy (the service's transient
    classifier reads both). A connection that broke is invalidated together with every
    pooled connection as old as it (what SQLAlchemy does when a statement it runs finds
    the database gone: after a restart one request fails, not one per pooled
    connection); an interrupted flight (its state unknown) invalidates its connection.
    """
    driver: Any = raw.driver_connection
    try:
        async with driver.pipeline():
            yield
    except psycopg.Error as exc:
        if driver.broken or driver.closed:
            conn.sync_engine.pool._invalidate(raw, exc)  # as SQLAlchemy does
            await conn.invalidate(exc)
        raise
    except BaseException:
        await conn.invalidate()
        raise
