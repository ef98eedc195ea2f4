"""A claimed batch as AMQP frames, written to the channel in ONE write with its confirms.

Why not ``exchange.publish()`` per row: profiled on a 2-core machine, the relay spent
about a third of its CPU in one socket ``send()`` per message (aio-pika/aiormq await a
drain per publish), plus a task, a lock round, a timeout scope and an
``aio_pika.Message`` per row; the client process, not the broker, was the limit. Here
each row is marshalled once into its ``Basic.Publish`` + content header + body frames,
the batch's bytes are joined and handed to the connection's writer as one frame
payload, and each row gets one confirmation future registered exactly as aiormq's own
``Channel.basic_publish`` registers it (delivery tag -> future, message id -> tag).
aiormq's reader then resolves those futures unchanged: ``Basic.Ack`` sets the result,
``Basic.Nack`` a ``DeliveryError``, ``Basic.Return`` (mandatory, unroutable) a
``PublishError``, a closed channel or connection rejects them all.

This uses attributes of ``aiormq.Channel`` that are not documented API (``lock``,
``delivery_tag``, ``confirmations``, ``message_id_delivery_tag``, ``write_queue``, the
same ones ``basic_publish`` uses); :func:`supported` checks them when the publisher
starts and the relay refuses to start with an aiormq that lacks them (loud at once, in
CI first), rather than publish with tags it cannot trust.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from outbox.headers import from_jsonable
from outbox.topology import APP_ID

PERSISTENT = 2
_REQUIRED = ("lock", "delivery_tag", "confirmations", "message_id_delivery_tag", "write_queue")


def supported(channel: Any) -> bool:
    """True when this aiormq channel has what :func:`send` relies on."""
    return all(hasattr(channel, name) for name in _REQUIRED) and bool(channel.publisher_confirms)


def properties(
    message_id: str, event_type: str, created_at: datetime, headers: dict[str, Any]
) -> spec.Basic.Properties:
    """The row's AMQP properties (DESIGN.md "Events and broker topology")."""
    return spec.Basic.Properties(
        message_id=message_id,
        message_type=event_type,
        content_type="application/json",
        content_encoding="utf-8",
        app_id=APP_ID,
        delivery_mode=PERSISTENT,
        priority=0,  # what aio-pika always sent: byte-identical to the earlier relay
        timestamp=created_at,
        headers=from_jsonable(headers) if headers else {},
    )


def encode(
    channel_number: int,
    max_body_frame: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    props: spec.Basic.Properties,
) -> bytes:
    """One message's frames, marshalled; raises (TypeError/ValueError/...) for a row
    pamqp cannot encode, before anything is registered or sent."""
    parts = [
        pamqp.frame.marshal(
            spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True),
            channel_number,
        ),
        pamqp.frame.marshal(ContentHeader(0, len(body), props), channel_number),
    ]
    for start in range(0, len(body), max_body_frame):
        chunk = body[start : start + max_body_frame]
        parts.append(pamqp.frame.marshal(ContentBody(chunk), channel_number))
    return b"".join(parts)


async def send(channel: Any, messages: list[tuple[str, bytes]]) -> list[asyncio.Future[Any]]:
    """Write ``(message_id, frames)`` in order as one payload; one confirm future each.

    The channel's publish lock is held while delivery tags are assigned and the payload
    is queued, so no other publish on this channel can interleave and shift the tags.
    """
    futures: list[asyncio.Future[Any]] = []
    payload = ChannelFrame(payload=b"".join(f for _, f in messages), should_close=False)
    async with channel.lock:
        first = channel.delivery_tag + 1
        for message_id, _ in messages:
            channel.delivery_tag += 1
            tag = channel.delivery_tag
            future = channel.create_future()
            channel.confirmations[tag] = future
            channel.message_id_delivery_tag[message_id] = tag
            future.add_done_callback(_forgetter(channel, message_id, tag))
            futures.append(future)
        try:
            await channel.write_queue.put(payload)
        except BaseException:
            # Not queued, so the broker never sees these tags: give them back, or every
            # later confirm would be matched to the wrong message.
            channel.delivery_tag = first - 1
            for tag in range(first, first + len(futures)):
                channel.confirmations.pop(tag, None)
            for future in futures:
                future.cancel()
            raise
    return futures


def _forgetter(channel: Any, message_id: str, tag: int) -> Any:
    def forget(_: asyncio.Future[Any]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]

    return forget


def body_frame_size(channel: Any) -> int:
    """Largest body chunk per frame on this channel (frame_max minus frame overhead)."""
    size = getattr(channel, "max_content_size", 0)
    return int(size) if size and size > 0 else 131_072 - 8
