"""What to do with a message that failed: the one classification function of the consumer.

:func:`classify` maps an exception and the message's attempt count to an explicit
:class:`Outcome` (ack / retry later / dead-letter). The policy (guarantee 6):

* permanent (``PermanentMessageError``: undecodable, schema-invalid, unknown type or
  version) -> dead-letter on the first delivery, disposition ``permanent``;
* transient (database unreachable or restarting, serialization failure, deadlock, lock
  or statement timeout, timeouts, broker connection errors) -> delayed retry through
  the broker tiers; once every tier was used -> dead-letter as ``exhausted``;
* anything else -> ``unknown_error_retries`` delayed retries, then dead-letter ``unknown``.

``asyncio.CancelledError`` (and every other ``BaseException`` that is not an
``Exception``) is re-raised, never classified.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import aiormq.exceptions
import psycopg
import sqlalchemy.exc

from outbox.errors import PermanentMessageError, TransientError


class Outcome(enum.Enum):
    """The settlement of one message."""

    ACK = "ack"
    RETRY_LATER = "retry_later"
    DEAD_LETTER = "dead_letter"


class ErrorKind(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


class DispositionKind(enum.StrEnum):
    """Why a message left the normal path (``x-disposition`` on dead letters)."""

    APPLIED = "applied"
    PERMANENT = "permanent"
    TRANSIENT = "transient"  # retried later
    UNKNOWN = "unknown"  # retried later, or dead-lettered once its retries are used up
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class Disposition:
    """The decision for one message.

    ``attempts`` counts failed attempts including this one (the new ``x-attempts``);
    ``delay`` is the retry tier's delay in seconds when ``outcome`` is RETRY_LATER.
    """

    outcome: Outcome
    kind: DispositionKind
    error_kind: ErrorKind | None = None
    error_class: str | None = None
    attempts: int = 0
    delay: float | None = None


ACK = Disposition(Outcome.ACK, DispositionKind.APPLIED)

# SQLSTATEs worth retrying: serialization failure, deadlock, lock not available, query
# canceled (statement timeout), idle-in-transaction timeout, too many connections.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "25P03", "53300"})
# Classes: 08 connection exception, 57P admin shutdown / crash shutdown / cannot connect now.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P")


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
        if isinstance(err, TimeoutError | ConnectionError):
            return True
        if isinstance(
            err,
            aiormq.exceptions.AMQPConnectionError
            | aiormq.exceptions.AMQPChannelError
            | aiormq.exceptions.ChannelInvalidStateError,
        ):
            return True
    return False


def error_class(exc: BaseException) -> str:
    """The class name operators filter on: the driver's error, not SQLAlchemy's wrapper."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(exc.orig, BaseException):
        return type(exc.orig).__name__
    return type(exc).__name__


def classify(
    exc: BaseException | None,
    previous_attempts: int,
    retry_delays: Sequence[float],
    unknown_error_retries: int,
) -> Disposition:
    """Decide what happens to a message whose processing raised ``exc`` (None: success).

    ``previous_attempts`` is the message's ``x-attempts`` header (0 on first delivery).
    """
    if exc is None:
        return ACK
    if not isinstance(exc, Exception):
        raise exc  # CancelledError, KeyboardInterrupt, SystemExit: never swallowed
    attempts = max(previous_attempts, 0) + 1
    name = error_class(exc)
    if isinstance(exc, PermanentMessageError):
        return Disposition(
            Outcome.DEAD_LETTER, DispositionKind.PERMANENT, ErrorKind.PERMANENT, name, attempts
        )
    if is_transient(exc):
        if attempts <= len(retry_delays):
            return Disposition(
                Outcome.RETRY_LATER,
                DispositionKind.TRANSIENT,
                ErrorKind.TRANSIENT,
                name,
                attempts,
                retry_delays[attempts - 1],
            )
        return Disposition(
            Outcome.DEAD_LETTER, DispositionKind.EXHAUSTED, ErrorKind.TRANSIENT, name, attempts
        )
    if attempts <= unknown_error_retries and retry_delays:
        delay = retry_delays[min(attempts, len(retry_delays)) - 1]
        return Disposition(
            Outcome.RETRY_LATER, DispositionKind.UNKNOWN, ErrorKind.UNKNOWN, name, attempts, delay
        )
    return Disposition(
        Outcome.DEAD_LETTER, DispositionKind.UNKNOWN, ErrorKind.UNKNOWN, name, attempts
    )
