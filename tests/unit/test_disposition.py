"""The classification function: permanent, transient, unknown, cancellation (no services)."""

from __future__ import annotations

import asyncio

import psycopg
import psycopg.errors
import pytest
import sqlalchemy.exc

from consumers.runtime.disposition import (
    ACK,
    DispositionKind,
    ErrorKind,
    Outcome,
    classify,
)
from outbox.errors import SchemaViolation, UndecodableBody, UnknownEventType
from outbox.transient import error_class, is_transient

DELAYS = [1.0, 5.0, 30.0]


def _wrapped(orig: Exception) -> sqlalchemy.exc.OperationalError:
    """How SQLAlchemy hands a driver error to the consumer."""
    return sqlalchemy.exc.OperationalError("INSERT ...", {}, orig)


def test_success_is_ack() -> None:
    assert classify(None, 0, DELAYS, 3) is ACK


@pytest.mark.parametrize("exc", [UndecodableBody("x"), SchemaViolation("x"), UnknownEventType("x")])
@pytest.mark.parametrize("previous", [0, 2])
def test_permanent_errors_are_dead_lettered_at_once(exc: Exception, previous: int) -> None:
    d = classify(exc, previous, DELAYS, 3)
    assert d.outcome is Outcome.DEAD_LETTER
    assert d.kind is DispositionKind.PERMANENT
    assert d.error_kind is ErrorKind.PERMANENT
    assert d.error_class == type(exc).__name__
    assert d.attempts == previous + 1


TRANSIENT = [
    _wrapped(psycopg.OperationalError("connection refused")),
    _wrapped(psycopg.errors.SerializationFailure("could not serialize")),
    _wrapped(psycopg.errors.DeadlockDetected("deadlock detected")),
    _wrapped(psycopg.errors.LockNotAvailable("lock timeout")),
    _wrapped(psycopg.errors.QueryCanceled("statement timeout")),
    _wrapped(psycopg.errors.AdminShutdown("terminating connection")),
    _wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, psycopg.InterfaceError("connection closed")),
    psycopg.errors.SerializationFailure("unwrapped"),
    TimeoutError(),
    ConnectionResetError(),
    sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: error_class(e))
def test_transient_errors_walk_through_the_tiers_then_are_exhausted(exc: Exception) -> None:
    assert is_transient(exc)
    for previous, delay in enumerate(DELAYS):
        d = classify(exc, previous, DELAYS, 0)
        assert d.outcome is Outcome.RETRY_LATER, previous
        assert d.delay == delay
        assert d.attempts == previous + 1
        assert d.error_kind is ErrorKind.TRANSIENT
    d = classify(exc, len(DELAYS), DELAYS, 0)
    assert d.outcome is Outcome.DEAD_LETTER
    assert d.kind is DispositionKind.EXHAUSTED
    assert d.attempts == len(DELAYS) + 1


def test_error_class_names_the_driver_error_not_the_wrapper() -> None:
    exc = _wrapped(psycopg.errors.DeadlockDetected("deadlock"))
    assert classify(exc, 0, DELAYS, 3).error_class == "DeadlockDetected"


def test_transient_cause_is_found_through_the_exception_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("while applying") from inner
    except RuntimeError as exc:
        assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bug"),
        KeyError("bug"),
        _wrapped(psycopg.errors.UndefinedTable("relation does not exist")),
        sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup")),
    ],
    ids=lambda e: error_class(e),
)
def test_unknown_errors_get_a_few_retries_then_are_dead_lettered(exc: Exception) -> None:
    assert not is_transient(exc)
    for previous in range(2):
        d = classify(exc, previous, DELAYS, 2)
        assert d.outcome is Outcome.RETRY_LATER
        assert d.kind is DispositionKind.UNKNOWN
        assert d.delay == DELAYS[previous]
    d = classify(exc, 2, DELAYS, 2)
    assert (d.outcome, d.kind, d.attempts) == (Outcome.DEAD_LETTER, DispositionKind.UNKNOWN, 3)


def test_unknown_retries_beyond_the_tiers_reuse_the_last_tier() -> None:
    d = classify(ValueError(), 5, DELAYS, 10)
    assert (d.outcome, d.delay) == (Outcome.RETRY_LATER, DELAYS[-1])


def test_no_tiers_means_no_retry() -> None:
    assert classify(TimeoutError(), 0, [], 3).kind is DispositionKind.EXHAUSTED
    assert classify(ValueError(), 0, [], 3).outcome is Outcome.DEAD_LETTER


def test_zero_unknown_retries_dead_letters_unknown_errors_at_once() -> None:
    d = classify(ValueError(), 0, DELAYS, 0)
    assert (d.outcome, d.kind) == (Outcome.DEAD_LETTER, DispositionKind.UNKNOWN)


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3)])
def test_cancellation_and_exit_are_never_swallowed(exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        classify(exc, 0, DELAYS, 3)


def test_a_negative_attempt_count_counts_as_zero() -> None:
    assert classify(TimeoutError(), -5, DELAYS, 3).attempts == 1
