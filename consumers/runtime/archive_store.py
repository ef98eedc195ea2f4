"""Turning a message from ``<name>.dead`` into a ``subscribers.dead_letters`` row, and storing.

Two kinds of dead letter arrive: ours (the subscriber's consumer added ``x-dead-letter-id`` and
the ``x-error-*`` headers) and the broker's (the quorum queue's delivery limit: only an
``x-death`` list says why). Anything else found in the queue is stored too, as
``unknown``: the archiver never drops a message. The body is stored as the exact bytes;
properties and headers go through :func:`outbox.headers.to_jsonable`, which is lossless.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from outbox.headers import to_jsonable
from outbox.models import DeadLetter
from outbox.topology import (
    H_ATTEMPTS,
    H_DEAD_LETTER_ID,
    H_DISPOSITION,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FAILED_QUEUE,
    H_FIRST_FAILED_AT,
    H_ORIGINAL_ROUTING_KEY,
    H_TRACEBACK,
    queue_name,
)

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)


def _storable(value: Any) -> Any:
    """PostgreSQL cannot hold NUL in text or JSON, nor JSON NaN: such values become bytes
    (NUL strings) or strings (non-finite floats) before the JSON encoding."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", "\\x00"): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if isinstance(value, str) and "\x00" in value:
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def jsonable(value: Any) -> Any:
    """AMQP table -> JSON that PostgreSQL accepts (see :func:`_storable`)."""
    return to_jsonable(_storable(value))


def _text(value: Any, limit: int | None = None) -> str | None:
    """A header value as column text: NUL-free, truncated to the column width."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = str(value)
    text = text.replace("\x00", "\\x00")
    return text[:limit] if limit else text


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(min(value, 2**31 - 1), 0)
    return 0


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _when(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def _death(headers: dict[str, Any]) -> dict[str, Any] | None:
    """The x-death entry that explains the dead-lettering (delivery_limit if present)."""
    deaths = [d for d in headers.get("x-death") or [] if isinstance(d, dict)]
    for entry in deaths:
        if entry.get("reason") == "delivery_limit":
            return entry
    return deaths[0] if deaths else None


def letter_row(
    message: AbstractIncomingMessage, subscriber: str, now: datetime | None = None
) -> dict[str, Any]:
    """Column values of the dead-letter row for ``message`` from ``<subscriber>.dead``."""
    now = now or datetime.now(UTC)
    own_queue = queue_name(subscriber)
    headers: dict[str, Any] = dict(message.headers or {})
    properties = {name: getattr(message, name, None) for name in PROPERTY_NAMES}
    stored_headers = jsonable(headers)
    body_hash = hashlib.sha256(message.body).hexdigest()
    routing_key = headers.get(H_ORIGINAL_ROUTING_KEY) or message.routing_key
    row: dict[str, Any] = {
        "subscriber": subscriber,
        "message_id": _text(message.message_id, 255),
        "event_type": _text(message.type, 100),
        "routing_key": _text(routing_key, 255),
        "body": message.body,
        "properties": jsonable(properties),
        "headers": stored_headers,
        "traceback": _text(headers.get(H_TRACEBACK)),
        "first_failed_at": _when(headers.get(H_FIRST_FAILED_AT)),
        "dead_lettered_at": now,
        "failed_queue": _text(headers.get(H_FAILED_QUEUE) or own_queue, 255),
        "attempts": _int(headers.get(H_ATTEMPTS)),
    }
    letter_id = headers.get(H_DEAD_LETTER_ID)
    death = _death(headers)
    if isinstance(letter_id, str) and 0 < len(letter_id) <= 128 and "\x00" not in letter_id:
        row.update(
            dedup_key=letter_id,
            error_class=_text(headers.get(H_ERROR_CLASS) or "Unknown", 200),
            error_message=_text(headers.get(H_ERROR_MESSAGE) or ""),
            disposition=_text(headers.get(H_DISPOSITION) or "unknown", 32),
        )
    elif death is not None:
        reason = _text(death.get("reason")) or "unknown"
        by_limit = reason == "delivery_limit"
        queue = _text(death.get("queue"), 255) or own_queue
        message_text = f"dead-lettered by the broker from {queue} (reason {reason})"
        if headers.get(H_ERROR_CLASS):
            last = f"{_text(headers[H_ERROR_CLASS])}: {_text(headers.get(H_ERROR_MESSAGE))}"
            message_text += f"; last consumer error {last}"
        row.update(
            dedup_key="x-death:"
            + _digest(message.message_id, jsonable(headers["x-death"]), body_hash),
            error_class="DeliveryLimitExceeded"
            if reason == "delivery_limit"
            else "BrokerDeadLetter",
            error_message=message_text,
            disposition="delivery-limit" if by_limit else f"broker-{reason}"[:32],
            failed_queue=queue,
            attempts=_int(headers.get("x-delivery-count")) or row["attempts"],
            first_failed_at=row["first_failed_at"] or _when(death.get("time")),
            dead_lettered_at=_when(death.get("time")) or now,
        )
        keys = death.get("routing-keys")
        if isinstance(keys, list) and keys and not headers.get(H_ORIGINAL_ROUTING_KEY):
            row["routing_key"] = _text(keys[0], 255)
    else:
        # Published into <name>.dead by something else: keep it, flagged as unexplained.
        row.update(
            # x-delivery-count changes on every redelivery from <name>.dead: not identity.
            dedup_key="unlabelled:"
            + _digest(
                subscriber,
                message.message_id,
                {k: v for k, v in stored_headers.items() if k != "x-delivery-count"},
                body_hash,
            ),
            error_class="UnlabelledDeadLetter",
            error_message="message in the dead-letter queue without x-dead-letter-id or x-death",
            disposition="unknown",
        )
    return row


async def store(engine: AsyncEngine, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Insert ``rows`` in one transaction; dedup keys already stored are skipped.
    Returns (subscriber, disposition) of the rows that were new. Commits before returning
    (the caller acks after)."""
    if not rows:
        return []
    stmt = (
        insert(DeadLetter)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[DeadLetter.dedup_key])
        .returning(DeadLetter.subscriber, DeadLetter.disposition)
    )
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
        return [(row[0], row[1]) for row in result]
