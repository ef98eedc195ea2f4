"""What to do with a message that failed: the one classification function of the consumer.

:func:`classify` maps an exception and the message's attempt count to an explicit
:class:`Outcome` (ack / retry later / dead-letter). The policy (guarantee 6):

* permanent (``PermanentMessageError``: undecodable, schema-invalid, unknown type or
  version) -> dead-letter on the first delivery, disposition ``permanent``;
* transient (:func:`outbox.transient.is_transient`: database unreachable or restarting,
  serialization failure, deadlock, timeouts, broker connection errors, a subscriber's
  ``TransientError``) -> delayed retry through
  the broker tiers; once every tier was used -> dead-letter as ``exhausted``;
* anything else -> ``unknown_error_retries`` delayed retries, then dead-letter ``unknown``.

``asyncio.CancelledError`` (and every other ``BaseException`` that is not an
``Exception``) is re-raised, never classified.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from outbox.errors import PermanentMessageError
from outbox.transient import error_class, is_transient


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
