"""A claimed batch as AMQP frames, written to the channel in ONE write, with its confirms.

Why not ``exchange.publish()`` per row: profiled on a 2-core machine, the relay spent
about a third of its CPU in one socket ``send()`` per message (aio-pika/aiormq await a
drain per publish), plus a task, a lock round, a timeout scope and an
``aio_pika.Message`` per row; the client process, not the broker, was the limit. Here
each row is marshalled once into its ``Basic.Publish`` + content header + body frames,
the batch's bytes are joined and handed to the connection's writer as one frame
payload, and each row's delivery tag is registered exactly where aiormq's own
``Channel.basic_publish`` registers it (delivery tag -> confirmation, message id ->
tag). aiormq's reader then settles them unchanged: ``Basic.Ack`` calls
``set_result``, ``Basic.Nack`` ``set_exception(DeliveryError)``, ``Basic.Return``
(mandatory, unroutable) ``set_exception(PublishError)``.

The confirmation registered per row is not an ``asyncio.Future`` but a small slot
object (:class:`_Tag`) that writes the answer into its batch (:class:`Confirms`): a
future per row cost a FutureStore entry, two or three done-callbacks each scheduled
through the event loop, and an ``asyncio.wait`` registration - about a fifth of the
relay's CPU in the profile. One real future per batch, created by the channel (so
aiormq rejects it when the channel or connection closes), wakes the waiter once every
row is answered.

Marshalling: pamqp's generic ``marshal`` walks every property of ``Basic.Properties``
per message and was the largest single cost left. :class:`Encoder` builds the same
bytes from parts: the ``Basic.Publish`` frame once per (exchange, routing key), the
constant properties once, and per message only what varies (message id, type,
timestamp, headers), each encoded by pamqp's own field encoders. The generic path
(:func:`encode`) stays as the reference: ``tests/unit/test_relay_frames.py`` requires
byte-identical output over generated messages, and messages the shortcut does not
cover (an empty type, which pamqp leaves out of the property flags) take it.

This uses attributes of ``aiormq.Channel`` that are not documented API (``lock``,
``delivery_tag``, ``confirmations``, ``message_id_delivery_tag``, ``write_queue``, the
same ones ``basic_publish`` uses); :func:`supported` checks them when the publisher
starts and the relay refuses to start with an aiormq that lacks them (loud at once, in
CI first), rather than publish with tags it cannot trust.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp import constants
from pamqp import encode as amqp
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from outbox.headers import from_jsonable
from outbox.topology import APP_ID

PERSISTENT = 2
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
_REQUIRED = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "_on_confirm_frame",
    "_confirm_delivery",
)
log = logging.getLogger("qa.relay.frames")


def supported(channel: Any) -> bool:
    """True when this aiormq channel has what :func:`send` relies on."""
    return all(hasattr(channel, name) for name in _REQUIRED) and bool(channel.publisher_confirms)


def install_ordered_confirms(channel: Any) -> None:
    """Settle a multiple ack by walking the channel's confirmations in tag order and
    stopping at the first tag above it, on this channel only (idempotent).

    aiormq's own handler walks *every* registered tag for each multiple ack and
    schedules one callback per settled tag; with a few batches of 2,000 in flight and a
    multiple ack every ~100 messages that walk cost the relay more CPU per message than
    marshalling it. The walk may stop early because tags are registered in ascending
    order and only aiormq's ``Returning`` placeholders (a returned message whose ack is
    still due) are ever re-inserted, at the end, after every tag lower than theirs; a
    placeholder the walk stops at or does not reach has already given its message its
    answer and is dropped by a later ack's walk or with the channel. Each tag is settled
    through aiormq's own ``_confirm_delivery``, after the walk (the dict is not changed
    while it is walked).
    """
    if getattr(channel, "_qa_ordered_confirms", False):
        return

    async def on_confirm_frame(frame: Any) -> None:
        confirmations = channel.confirmations
        last = frame.delivery_tag
        if last not in confirmations:
            log.error("unexpected confirmation frame %r from the broker", frame)
            return
        if not getattr(frame, "multiple", False):
            channel._confirm_delivery(last, frame)
            return
        settled = []
        for tag in confirmations:
            if tag > last:
                break
            settled.append(tag)
        for tag in settled:
            channel._confirm_delivery(tag, frame)

    channel._on_confirm_frame = on_confirm_frame
    channel._qa_ordered_confirms = True


def properties(
    message_id: str, event_type: str, created_at: datetime, headers: dict[str, Any]
) -> spec.Basic.Properties:
    """The row's AMQP properties (DESIGN.md "Events and broker topology")."""
    return spec.Basic.Properties(
        message_id=message_id,
        message_type=event_type,
        content_type=CONTENT_TYPE,
        content_encoding=CONTENT_ENCODING,
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
    """One message's frames through pamqp's generic marshalling (the reference); raises
    (TypeError/ValueError/...) for a row pamqp cannot encode, before anything is sent."""
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


_FRAME = struct.Struct(">BHI")  # frame type, channel, payload size
_HEADER = struct.Struct(">HxxQ")  # class id, weight (0), body size
_END = constants.FRAME_END_CHAR
_EMPTY_TABLE = amqp.field_table({})


def _flags(*names: str) -> bytes:
    flags = 0
    for name in names:
        flags |= spec.Basic.Properties.flags[name]
    return struct.pack(">H", flags)


# Our property set in pamqp's order (Basic.Properties.__slots__), split where a value
# varies per message: flags, content_type, content_encoding | headers | delivery_mode,
# priority | message_id, timestamp, message_type | app_id.
_PROPS_HEAD = (
    _flags(
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "message_id",
        "timestamp",
        "message_type",
        "app_id",
    )
    + amqp.short_string(CONTENT_TYPE)
    + amqp.short_string(CONTENT_ENCODING)
)
_PROPS_MODE = amqp.octet(PERSISTENT) + amqp.octet(0)
_PROPS_TAIL = amqp.short_string(APP_ID)


class Encoder:
    """Marshals messages for one channel, byte-identical to :func:`encode`."""

    def __init__(self, channel_number: int, max_body_frame: int) -> None:
        self.channel_number = channel_number
        self.max_body_frame = max_body_frame
        self._publish: dict[tuple[str, str], bytes] = {}

    def message(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        event_type: str,
        created_at: datetime,
        headers: dict[str, Any] | None,
    ) -> bytes:
        """One message's frames; raises like :func:`encode` for what pamqp refuses."""
        number = self.channel_number
        if not (message_id and event_type and type(body) is bytes):
            # pamqp leaves an empty property out of the flags: the generic path knows how.
            props = properties(message_id, event_type, created_at, headers or {})
            return encode(number, self.max_body_frame, exchange, routing_key, body, props)
        publish = self._publish.get((exchange, routing_key))
        if publish is None:
            publish = self._publish_frame(exchange, routing_key)
        header = b"".join(
            (
                _HEADER.pack(spec.Basic.frame_id, len(body)),
                _PROPS_HEAD,
                amqp.field_table(from_jsonable(headers)) if headers else _EMPTY_TABLE,
                _PROPS_MODE,
                amqp.short_string(message_id),
                amqp.timestamp(created_at),
                amqp.short_string(event_type),
                _PROPS_TAIL,
            )
        )
        parts = [publish, _FRAME.pack(constants.FRAME_HEADER, number, len(header)), header, _END]
        size = self.max_body_frame
        if 0 < len(body) <= size:
            parts += (_FRAME.pack(constants.FRAME_BODY, number, len(body)), body, _END)
        else:  # several body frames, or none for an empty body
            for start in range(0, len(body), size):
                chunk = body[start : start + size]
                parts += (_FRAME.pack(constants.FRAME_BODY, number, len(chunk)), chunk, _END)
        return b"".join(parts)

    def _publish_frame(self, exchange: str, routing_key: str) -> bytes:
        method = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
        frame = pamqp.frame.marshal(method, self.channel_number)  # validates the names
        if len(self._publish) < 1024:  # a hostile stream of names cannot grow it forever
            self._publish[(exchange, routing_key)] = frame
        return frame


class _Tag:
    """What aiormq holds for one delivery tag: the row's place in its batch."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Confirms, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.closed or self._batch.answers[self._index] is not _PENDING

    def cancelled(self) -> bool:
        return self._batch.closed  # an answer that came too late is not worth a warning

    def set_result(self, _frame: Any) -> None:
        self._batch.answer(self._index, None)

    def set_exception(self, exc: BaseException) -> None:
        self._batch.answer(self._index, exc)


_PENDING: Any = object()


class Confirms:
    """The broker's answer for each message of one batch written by :func:`send`."""

    def __init__(
        self,
        channel: Any,
        message_ids: Sequence[str],
        first_tag: int,
        on_close: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._channel = channel
        self.message_ids = message_ids
        self.first_tag = first_tag
        self.answers: list[Any] = [_PENDING] * len(message_ids)
        self.pending = len(message_ids)
        self.closed = False
        self._on_close = on_close
        # Created by the channel: aiormq rejects it if the channel or connection closes.
        self._all: asyncio.Future[None] = channel.create_future()
        if not self.pending:
            self._all.set_result(None)

    def answer(self, index: int, error: BaseException | None) -> None:
        """The broker's answer for one message (None: confirmed); later ones are ignored."""
        if self.closed or self.answers[index] is not _PENDING:
            return
        self.answers[index] = error
        self.pending -= 1
        if not self.pending and not self._all.done():
            self._all.set_result(None)

    async def wait(self, within: float | None) -> list[BaseException | None]:
        """Until every message is answered, the channel closes, or ``within`` seconds
        passed; then :meth:`close` and return the outcomes (see :meth:`outcomes`)."""
        try:
            if not self._all.done():
                await asyncio.wait((self._all,), timeout=within)
        finally:
            self.close()
        return self.outcomes()

    def close(self) -> None:
        """Stop listening: an unanswered message stays unanswered (not published), a late
        answer is ignored. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if not self._all.done():
            self._all.cancel()
        known = self._channel.message_id_delivery_tag
        for tag, message_id in enumerate(self.message_ids, self.first_tag):
            if known.get(message_id) == tag:
                del known[message_id]
        if self._on_close is not None:
            self._on_close(self.message_ids)

    def outcomes(self) -> list[BaseException | None]:
        """Per message: None (confirmed), the broker's or channel's error, or
        ``CancelledError`` for one left unanswered (timeout, abandoned)."""
        failure: BaseException
        if self._all.done() and not self._all.cancelled() and self._all.exception() is not None:
            failure = self._all.exception()  # type: ignore[assignment]  # channel closed
        else:
            failure = asyncio.CancelledError()
        return [failure if a is _PENDING else a for a in self.answers]


async def send(
    channel: Any,
    messages: list[tuple[str, bytes]],
    on_close: Callable[[Sequence[str]], None] | None = None,
) -> Confirms:
    """Write ``(message_id, frames)`` in order as one payload; their confirms come back
    in the returned :class:`Confirms`.

    The channel's publish lock is held while delivery tags are assigned and the payload
    is queued, so no other publish on this channel can interleave and shift the tags.
    """
    message_ids = [message_id for message_id, _ in messages]
    payload = ChannelFrame(payload=b"".join([f for _, f in messages]), should_close=False)
    async with channel.lock:
        first = channel.delivery_tag + 1
        confirms = Confirms(channel, message_ids, first, on_close)
        confirmations = channel.confirmations
        known = channel.message_id_delivery_tag
        for index, message_id in enumerate(message_ids):
            tag = first + index
            confirmations[tag] = _Tag(confirms, index)
            known[message_id] = tag
        channel.delivery_tag = first + len(message_ids) - 1
        try:
            await channel.write_queue.put(payload)
        except BaseException:
            # Not queued, so the broker never sees these tags: give them back, or every
            # later confirm would be matched to the wrong message.
            channel.delivery_tag = first - 1
            for tag in range(first, first + len(message_ids)):
                confirmations.pop(tag, None)
            confirms.close()
            raise
    return confirms


def body_frame_size(channel: Any) -> int:
    """Largest body chunk per frame on this channel (frame_max minus frame overhead)."""
    size = getattr(channel, "max_content_size", 0)
    return int(size) if size and size > 0 else 131_072 - 8
