"""The copies a consumer publishes for a failed message: a delayed retry or a dead letter.

Both keep the original body byte for byte and the original properties; headers are the
original headers plus why it failed. Retries go to a tier queue (``<name>.retry.<ms>ms``)
on the default exchange, whose TTL dead-letters them back to ``<name>.events`` only. Dead
letters go to ``<name>.dead`` on the default exchange for the archiver.
"""

from __future__ import annotations

import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from consumers.runtime.disposition import Disposition, DispositionKind
from outbox.headers import encodable
from outbox.topology import (
    H_ATTEMPTS,
    H_DEAD_LETTER_ID,
    H_DISPOSITION,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FAILED_QUEUE,
    H_FIRST_FAILED_AT,
    H_ORIGINAL_ROUTING_KEY,
    H_SUBSCRIBER,
    H_TRACEBACK,
    dead_queue_name,
    queue_name,
    retry_queue_name,
)

# Properties a dead letter cannot keep as properties (see _properties) go to headers.
H_ORIGINAL_EXPIRATION = "x-original-expiration"
H_ORIGINAL_USER_ID = "x-original-user-id"

MAX_ERROR_MESSAGE = 1000
MAX_TRACEBACK = 4000
_MAX_ATTEMPTS_HEADER = 1_000_000


def attempts_of(message: AbstractIncomingMessage) -> int:
    """Failed attempts so far, from ``x-attempts``; anything unreadable counts as 0."""
    value = (message.headers or {}).get(H_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        return 0
    try:
        attempts = int(value)
    except ValueError:
        return 0
    return attempts if 0 <= attempts < _MAX_ATTEMPTS_HEADER else 0


def _safe_text(value: str, limit: int, keep_end: bool = False) -> str:
    # Lone surrogates cannot be encoded into an AMQP header; escape them instead.
    cleaned = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(cleaned) <= limit:
        return cleaned
    return ("..." + cleaned[-(limit - 3) :]) if keep_end else (cleaned[: limit - 3] + "...")


def error_message(exc: BaseException) -> str:
    return _safe_text(f"{type(exc).__name__}: {exc}", MAX_ERROR_MESSAGE)


def traceback_excerpt(exc: BaseException) -> str:
    """The end of the traceback (where it failed), at most ``MAX_TRACEBACK`` characters."""
    return _safe_text("".join(traceback.format_exception(exc)), MAX_TRACEBACK, keep_end=True)


def _properties(message: AbstractIncomingMessage, *, dead: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "delivery_mode": message.delivery_mode,
        "priority": message.priority,
        "correlation_id": message.correlation_id,
        "reply_to": message.reply_to,
        "message_id": message.message_id,
        "timestamp": message.timestamp,
        "type": message.type,
        "app_id": message.app_id,
    }
    # user_id is checked by the broker against the publishing user, so a copy published
    # by the consumer could be refused; an expiring dead letter would vanish from
    # <name>.dead. Both are kept as headers instead.
    if not dead:
        props["expiration"] = message.expiration
    return props


def _failure_headers(
    message: AbstractIncomingMessage, disposition: Disposition, exc: BaseException, now: datetime
) -> dict[str, Any]:
    headers: dict[str, Any] = encodable(dict(message.headers or {}))
    headers.setdefault(H_ORIGINAL_ROUTING_KEY, message.routing_key or "")
    headers.setdefault(H_FIRST_FAILED_AT, now.isoformat())
    headers[H_ATTEMPTS] = disposition.attempts
    headers[H_ERROR_CLASS] = disposition.error_class or type(exc).__name__
    headers[H_ERROR_MESSAGE] = error_message(exc)
    return headers


def retry_message(
    subscriber: str,
    message: AbstractIncomingMessage,
    disposition: Disposition,
    exc: BaseException,
    now: datetime | None = None,
) -> tuple[aio_pika.Message, str]:
    """The delayed-retry copy and the tier queue (routing key) to publish it to."""
    if disposition.delay is None:
        raise ValueError("a retry needs a delay")
    headers = _failure_headers(message, disposition, exc, now or datetime.now(UTC))
    copy = aio_pika.Message(message.body, headers=headers, **_properties(message, dead=False))
    return copy, retry_queue_name(subscriber, disposition.delay)


def dead_letter_message(
    subscriber: str,
    message: AbstractIncomingMessage,
    disposition: Disposition,
    exc: BaseException,
    now: datetime | None = None,
) -> tuple[aio_pika.Message, str]:
    """The dead letter for ``<subscriber>.dead`` and its routing key."""
    headers = _failure_headers(message, disposition, exc, now or datetime.now(UTC))
    headers[H_FAILED_QUEUE] = queue_name(subscriber)
    headers[H_SUBSCRIBER] = subscriber
    headers[H_DISPOSITION] = str(disposition.kind or DispositionKind.UNKNOWN)
    headers[H_DEAD_LETTER_ID] = str(uuid.uuid4())
    headers[H_TRACEBACK] = traceback_excerpt(exc)
    if message.expiration is not None:
        headers.setdefault(H_ORIGINAL_EXPIRATION, str(message.expiration))
    if message.user_id is not None:
        headers.setdefault(H_ORIGINAL_USER_ID, message.user_id)
    copy = aio_pika.Message(message.body, headers=headers, **_properties(message, dead=True))
    return copy, dead_queue_name(subscriber)
