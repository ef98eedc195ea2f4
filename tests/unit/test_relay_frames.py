"""The relay's batch framing: same properties aio-pika would send, bodies split to the
frame size, the shortcut encoder byte-identical to pamqp's generic marshalling, delivery
tags given back when a batch never reaches the writer, and each message's confirm,
nack, return or silence reported where it belongs."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from types import MethodType
from typing import Any

import aio_pika
import aiormq
import pamqp.frame
import pytest
from aiormq.channel import Returning
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import frames


def test_properties_are_those_of_the_equivalent_aio_pika_message() -> None:
    event_id = str(uuid.uuid4())
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {"x-n": 1, "x-s": "v", "x-d": {"$decimal": "1.5"}}
    expected = aio_pika.Message(
        b"{}",
        message_id=event_id,
        type="answer.created",
        content_type="application/json",
        content_encoding="utf-8",
        app_id="qa-outbox",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=created,
        headers={"x-n": 1, "x-s": "v", "x-d": Decimal("1.5")},
    ).properties
    ours = frames.properties(event_id, "answer.created", created, headers)
    assert pamqp.frame.marshal(pamqp.header.ContentHeader(0, 2, ours), 1) == pamqp.frame.marshal(
        pamqp.header.ContentHeader(0, 2, expected), 1
    )


def _decode_all(data: bytes) -> list[Any]:
    out = []
    while data:
        consumed, _, frame = pamqp.frame.unmarshal(data)
        out.append(frame)
        data = data[consumed:]
    return out


def test_a_body_larger_than_one_frame_is_split_in_order() -> None:
    body = bytes(range(256)) * 10  # 2560 bytes, 1000-byte frames -> 3 body frames
    props = frames.properties("m", "t", datetime.now(UTC), {})
    decoded = _decode_all(frames.encode(3, 1000, "qa.events", "t", body, props))
    assert [type(f).__name__ for f in decoded] == ["Publish", "ContentHeader"] + ["ContentBody"] * 3
    assert decoded[0].mandatory is True and decoded[0].exchange == "qa.events"
    assert decoded[1].body_size == len(body)
    assert b"".join(f.value for f in decoded[2:]) == body


class _Channel:
    """Just the attributes frames.send uses, with a writer queue that is full."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.delivery_tag = 41
        self.confirmations: dict[int, Any] = {}
        self.message_id_delivery_tag: dict[str, int] = {}
        self.write_queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self.publisher_confirms = True
        self.futures: list[asyncio.Future[Any]] = []

    def create_future(self) -> asyncio.Future[Any]:
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]

    async def _on_confirm_frame(self, frame: Any) -> None: ...

    def _confirm_delivery(self, tag: int, frame: Any) -> None: ...


async def test_tags_are_given_back_when_the_batch_is_cancelled_before_it_is_queued() -> None:
    channel = _Channel()
    assert frames.supported(channel)
    channel.write_queue.put_nowait(object())  # the writer is behind: put() has to wait
    task = asyncio.create_task(frames.send(channel, [("a", b"x"), ("b", b"y")]))
    for _ in range(10):  # let send() register its tags and block on the full queue
        await asyncio.sleep(0)
    assert channel.confirmations
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel.delivery_tag == 41
    assert channel.confirmations == {}
    assert channel.message_id_delivery_tag == {}


async def test_queued_batch_registers_one_tag_per_message_in_order() -> None:
    channel = _Channel()
    confirms = await frames.send(channel, [("a", b"x"), ("b", b"y")])
    assert channel.write_queue.get_nowait().payload == b"xy"
    assert sorted(channel.confirmations) == [42, 43]
    assert channel.message_id_delivery_tag == {"a": 42, "b": 43}
    assert channel.delivery_tag == 43
    channel.confirmations.pop(42).set_result(None)
    assert confirms.pending == 1
    channel.confirmations.pop(43).set_result(None)
    assert await confirms.wait(1.0) == [None, None]
    assert channel.message_id_delivery_tag == {}


async def test_each_message_gets_its_own_answer_and_a_late_one_is_ignored() -> None:
    channel = _Channel()
    closed: list[list[str]] = []
    messages = [("a", b"x"), ("b", b"y"), ("c", b"z"), ("d", b"w")]
    confirms = await frames.send(channel, messages, lambda ids: closed.append(list(ids)))
    # aiormq passes its DeliveryError (nack) and PublishError (return): any error object.
    nack, returned = RuntimeError("nack"), RuntimeError("returned")
    tags = channel.confirmations
    tags[42].set_result(None)
    tags[43].set_exception(nack)
    tags[44].set_exception(returned)
    tags[44].set_result(None)  # the ack after a return changes nothing
    assert tags[44].done() and not tags[45].done()
    results = await confirms.wait(0.01)  # "d" never answered: the wait times out
    assert results[:3] == [None, nack, returned]
    assert isinstance(results[3], asyncio.CancelledError)
    assert closed == [["a", "b", "c", "d"]]
    assert tags[45].done() and tags[45].cancelled()  # aiormq logs a late answer at debug
    tags[45].set_result(None)
    assert isinstance(confirms.outcomes()[3], asyncio.CancelledError)


async def test_a_closed_channel_fails_every_unanswered_message_with_its_error() -> None:
    channel = _Channel()
    confirms = await frames.send(channel, [("a", b"x"), ("b", b"y")])
    channel.confirmations[42].set_result(None)
    gone = ConnectionError("channel closed")
    channel.futures[-1].set_exception(gone)  # what aiormq's FutureStore does on close
    results = await confirms.wait(5.0)
    assert results == [None, gone]


_TEXT = st.text(max_size=60)
_HEADER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | _TEXT,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    channel_number=st.integers(1, 2047),
    frame_size=st.integers(1, 600),
    exchange=st.sampled_from(["qa.events", "", "other-exchange_1"]),
    routing_key=_TEXT,
    body=st.binary(max_size=2000),
    message_id=_TEXT,
    event_type=_TEXT,
    created_at=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    headers=st.none()
    | st.dictionaries(st.text(min_size=1, max_size=10), _HEADER_VALUES, max_size=4),
)
def test_the_shortcut_encoder_is_byte_identical_to_pamqp(
    channel_number: int,
    frame_size: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    message_id: str,
    event_type: str,
    created_at: datetime,
    headers: dict[str, Any] | None,
) -> None:
    encoder = frames.Encoder(channel_number, frame_size)
    args = (exchange, routing_key, body, message_id, event_type, created_at, headers)
    try:
        expected: bytes | type[BaseException] = frames.encode(
            channel_number,
            frame_size,
            exchange,
            routing_key,
            body,
            frames.properties(message_id, event_type, created_at, headers or {}),
        )
    except Exception as exc:  # what pamqp refuses, the shortcut must refuse too
        expected = type(exc)
    for _ in range(2):  # the second time through the cached Publish frame
        try:
            got: bytes | type[BaseException] = encoder.message(*args)
        except Exception as exc:
            got = type(exc)
        assert got == expected


class _ConfirmingChannel:
    """aiormq's own confirm and return bookkeeping, on a channel with no connection."""

    def __init__(self, ordered: bool) -> None:
        self.confirmations: dict[int, Any] = OrderedDict()
        self.publisher_confirms = True
        self.loop = asyncio.get_running_loop()
        self._confirm_delivery = MethodType(aiormq.Channel._confirm_delivery, self)
        self._on_confirm_frame = MethodType(aiormq.Channel._on_confirm_frame, self)
        if ordered:
            frames.install_ordered_confirms(self)

    def returned(self, tag: int) -> None:
        """What aiormq's ``_on_return_frame`` does with the returned message's tag."""
        confirmation = self.confirmations.pop(tag)
        self.confirmations[tag] = Returning()
        confirmation.set_exception(RuntimeError(f"returned {tag}"))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
async def test_ordered_confirms_settle_exactly_what_aiormqs_handler_settles(data: Any) -> None:
    count = data.draw(st.integers(1, 60))
    returned = data.draw(st.sets(st.integers(1, count)))
    acks = sorted(data.draw(st.sets(st.integers(1, count), min_size=1)))
    multiple = [data.draw(st.booleans()) for _ in acks]
    outcomes = []
    for ordered in (False, True):
        channel = _ConfirmingChannel(ordered)
        futures = {tag: asyncio.get_running_loop().create_future() for tag in range(1, count + 1)}
        channel.confirmations.update(futures)
        done_returns: set[int] = set()
        for ack, many in zip(acks, multiple, strict=True):
            # The broker returns an unroutable message before it acks it.
            for tag in sorted(t for t in returned - done_returns if t <= ack):
                channel.returned(tag)
                done_returns.add(tag)
            if ack in channel.confirmations:
                await channel._on_confirm_frame(pamqp.commands.Basic.Ack(ack, multiple=many))
            await asyncio.sleep(0)  # aiormq settles through call_soon
        outcomes.append(
            (
                {t: (f.exception() is None) for t, f in futures.items() if f.done()},
                sorted(t for t, c in channel.confirmations.items() if not isinstance(c, Returning)),
            )
        )
    assert outcomes[1] == outcomes[0]


def test_the_publisher_skips_the_readiness_retry_only_while_its_channel_is_open() -> None:
    from relay.publisher import Publisher

    class _Open:
        is_closed = False

    class _Closed:
        is_closed = True

    publisher = Publisher(connection=None, publish_timeout=1.0)  # type: ignore[arg-type]
    assert not publisher.usable()  # not started
    publisher._channel = _Closed()  # type: ignore[assignment]
    assert not publisher.usable()  # lost: the relay goes through the retrying wait
    publisher._channel = _Open()  # type: ignore[assignment]
    assert publisher.usable()
