"""The relay's batch framing: same properties aio-pika would send, bodies split to the
frame size, delivery tags given back when a batch never reaches the writer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pamqp.frame
import pytest

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

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


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
    futures = await frames.send(channel, [("a", b"x"), ("b", b"y")])
    assert channel.write_queue.get_nowait().payload == b"xy"
    assert sorted(channel.confirmations) == [42, 43]
    assert channel.message_id_delivery_tag == {"a": 42, "b": 43}
    futures[0].set_result(None)
    await asyncio.sleep(0)
    assert channel.message_id_delivery_tag == {"b": 43}
