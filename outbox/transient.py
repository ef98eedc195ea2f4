"""The one transient-error classifier: is a failure worth trying again later?

Used by the consumers (retry tiers vs dead letter), the dead-letter archiver (hand the
batch back vs give up on a row) and the API (503 with ``Retry-After`` vs 500).
Transient: the database unreachable, restarting or out of resources, a serialization
failure, a deadlock, a lock or statement timeout, a lost broker connection, socket
errors and timeouts, and :class:`~outbox.errors.TransientError` raised on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiormq.exceptions
import psycopg
import sqlalchemy.exc

from outbox.errors import TransientError

# SQLSTATEs worth retrying: serialization failure, deadlock, lock not available, query
# canceled (statement timeout), idle-in-transaction timeout.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "25P03"})
# Classes: 08 connection exception, 53 insufficient resources (too many connections,
# out of memory, disk full), 57P admin shutdown / crash shutdown / cannot connect now.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P")
_BROKER_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.AMQPChannelError,
    aiormq.exceptions.ChannelInvalidStateError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped, and its causes (bounded: cycles exist)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            seen.add(id(orig))
            yield orig
        current = current.__cause__ or current.__context__


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt can be expected to get past."""
    for err in _chain(exc):
        if isinstance(err, TransientError):
            return True
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
            return True
        state = _sqlstate(err)
        if state is not None:
            if state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
                return True
        elif isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            # No SQLSTATE: the connection itself failed (refused, reset, server gone).
            return True
        if isinstance(err, (OSError, TimeoutError, *_BROKER_ERRORS)):
            return True
    return False


def error_class(exc: BaseException) -> str:
    """The class name operators filter on: the driver's error, not SQLAlchemy's wrapper."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(exc.orig, BaseException):
        return type(exc.orig).__name__
    return type(exc).__name__
