"""Which messages wait in the delayed-retry tiers right now (for ``qa-ops events``).

Retry tiers are classic queues without consumers: a message sits there until its TTL
sends it back to the subscriber's queue. To see them, this takes up to ``limit``
messages per tier with ``basic.get`` WITHOUT acking and then closes the channel, which
returns every one of them to its original place with its original expiry. Nothing is
consumed or reordered; a tier message is held back for the few milliseconds of the scan.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import aiormq.exceptions

from outbox.amqp import connect_first
from outbox.topology import H_ATTEMPTS, H_ERROR_CLASS


@dataclass(frozen=True)
class Sighting:
    """One message seen in a retry tier."""

    queue: str
    attempts: int | None
    error_class: str | None
    headers: dict[str, Any]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def peek(amqp_url: str, queues: list[str], limit: int = 5000) -> dict[str, list[Sighting]]:
    """``{message_id: [sightings]}`` for the messages now waiting in ``queues``.

    A queue that does not exist is skipped. At most ``limit`` messages per queue are
    looked at (the rest of a long tier is not reported).
    """
    found: dict[str, list[Sighting]] = {}
    connection = await connect_first(amqp_url, connect_timeout=10)
    try:
        for name in queues:
            channel = await connection.channel()
            try:
                try:
                    queue = await channel.get_queue(name, ensure=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    continue  # the declare failed and closed this channel; next one
                for _ in range(limit):
                    message = await queue.get(no_ack=False, fail=False, timeout=10)
                    if message is None:
                        break
                    headers = dict(message.headers or {})
                    sighting = Sighting(
                        queue=name,
                        attempts=_int(headers.get(H_ATTEMPTS)),
                        error_class=_text(headers.get(H_ERROR_CLASS)),
                        headers=headers,
                    )
                    found.setdefault(message.message_id or "", []).append(sighting)
            finally:
                # Closing without acks puts every fetched message back where it was.
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await connection.close()
    return found
