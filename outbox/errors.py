"""Every error the service raises on purpose, in one place.

``api/`` translates these to HTTP; ``consumers/`` classifies them into an outcome.
"""

from __future__ import annotations


class QAError(Exception):
    """Base of the service's own errors."""


class NotFound(QAError):
    """The addressed resource does not exist."""


class Unauthorized(QAError):
    """No valid bearer token."""


class Forbidden(QAError):
    """A valid token, but its user may not do this (e.g. edit another user's question)."""


class IdempotencyConflict(QAError):
    """An ``Idempotency-Key`` was reused with a different request."""


class StartupError(QAError):
    """A process could not start (a dependency stayed unreachable past its budget)."""


class PermanentMessageError(QAError):
    """The message can never be applied, however often it is retried."""


class UndecodableBody(PermanentMessageError):
    """The body is not UTF-8 or not JSON."""


class SchemaViolation(PermanentMessageError):
    """The envelope or its ``data`` does not match the schema."""


class UnknownEventType(PermanentMessageError):
    """No schema is registered for this event type and version."""


class TransientError(QAError):
    """A failure a later attempt is expected to get past: retried through the tiers."""


class NotKnownYet(TransientError):
    """An event refers to something whose own event has not arrived yet (delivery order)."""


class DeliveryDeferred(TransientError):
    """An external system asked to try again later (an SMTP 4xx reply)."""


class DeliveryRejected(PermanentMessageError):
    """An external system refused for good (an SMTP 5xx reply); the message is its reply."""


class NotReplicated(TransientError):
    """A commit's wait for the synchronous standby was cancelled: the transaction is
    committed on the primary but its replication was never confirmed (a failover now
    would lose it). The API answers 503: retry with the same ``Idempotency-Key``."""
