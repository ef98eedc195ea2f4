"""Several raw ways to publish with confirms; the publish ceiling is the best of them.

Each strategy publishes the same real-size persistent messages through ``qa.events``
into the quorum queue ``feed.events`` (where the relay publishes), with publisher
confirms and ``mandatory=True``. With aio-pika's public API:

- ``window-N``: a sliding window of at most N unconfirmed publishes;
- ``gather-B``: whole batches of B publishes started at once, then awaited together
  (what a simple relay does with one claimed batch);
- ``gather-B-2ch``: the same batches split over two confirming channels.

And below aio-pika, the relay's own technique with no database behind it
(``relay/frames.py``: each batch marshalled once and written as one payload, its
confirms registered on the channel):

- ``frames-B-xD``: batches of B, up to D batches unconfirmed at once;
- ``frames-B-2ch-x2``: the same, two batches in flight on two channels.

The ceiling is the best of all of them (issue 13: "the best raw strategy you can
find"). ``best_aio_pika`` reports the best of the first group for comparison.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from bench import cpu
from bench.envelopes import message_for, publish_window
from bench.stats import rate
from outbox.topology import EVENTS_EXCHANGE, queue_name

FEED_QUEUE = queue_name("feed")

KEY = "answer.created"
BATCH = 2000
WINDOWS = (250, 1000, 4000)
FRAME_DEPTHS = (1, 2, 3)


async def _gather(exchanges: list[AbstractExchange], body: bytes, count: int, batch: int) -> int:
    failed = 0
    for start in range(0, count, batch):
        n = min(batch, count - start)
        results = await asyncio.gather(
            *(
                exchanges[i % len(exchanges)].publish(
                    message_for(body, uuid.uuid4(), KEY), KEY, mandatory=True
                )
                for i in range(n)
            ),
            return_exceptions=True,
        )
        failed += sum(isinstance(r, BaseException) for r in results)
    return failed


async def _frames(
    channels: Sequence[AbstractChannel], body: bytes, count: int, batch: int, depth: int
) -> int:
    """Batches written as frames (the relay's ``relay/frames.py``), up to ``depth`` of
    them unconfirmed at once, spread round-robin over ``channels``."""
    from relay import frames

    unders: list[Any] = [await c.get_underlay_channel() for c in channels]
    for under in unders:
        frames.install_ordered_confirms(under)
    encoders = [frames.Encoder(u.number, frames.body_frame_size(u)) for u in unders]
    failed = 0
    in_flight: list[frames.Confirms] = []
    for number, start in enumerate(range(0, count, batch)):
        under, encoder = unders[number % len(unders)], encoders[number % len(unders)]
        messages = []
        for _ in range(min(batch, count - start)):
            mid = str(uuid.uuid4())
            frame = encoder.message(EVENTS_EXCHANGE, KEY, body, mid, KEY, datetime.now(UTC), {})
            messages.append((mid, frame))
        in_flight.append(await frames.send(under, messages))
        while len(in_flight) >= depth:
            failed += sum(r is not None for r in await in_flight.pop(0).wait(None))
    for confirms in in_flight:
        failed += sum(r is not None for r in await confirms.wait(None))
    return failed


async def measure(amqp_url: str, body: bytes, count: int) -> dict[str, dict[str, float]]:
    """Every strategy once, ``count`` messages each, the queue purged before each."""
    connection = await aio_pika.connect_robust(amqp_url)
    out: dict[str, dict[str, float]] = {}
    try:
        admin = await connection.channel()
        queue = await admin.get_queue(FEED_QUEUE)
        chans = [
            await connection.channel(publisher_confirms=True, on_return_raises=True)
            for _ in range(2)
        ]
        exs = [await c.get_exchange(EVENTS_EXCHANGE) for c in chans]

        def window(n: int) -> Callable[[], Awaitable[int]]:
            async def go() -> int:
                msgs = ((message_for(body, uuid.uuid4(), KEY), KEY) for _ in range(count))
                return (await publish_window(exs[0], msgs, n)).failed

            return go

        strategies: dict[str, Callable[[], Awaitable[int]]] = {
            f"window-{n}": window(n) for n in WINDOWS
        }
        strategies[f"gather-{BATCH}"] = lambda: _gather(exs[:1], body, count, BATCH)
        strategies[f"gather-{BATCH}-2ch"] = lambda: _gather(exs, body, count, BATCH)
        for depth in FRAME_DEPTHS:
            strategies[f"frames-{BATCH}-x{depth}"] = partial(
                _frames, chans[:1], body, count, BATCH, depth
            )
        strategies[f"frames-{BATCH}-2ch-x2"] = partial(_frames, chans, body, count, BATCH, 2)
        for name, run in strategies.items():
            await queue.purge()
            broker = cpu.broker_seconds()
            started, client = time.perf_counter(), time.process_time()
            failed = await run()
            seconds = time.perf_counter() - started
            out[name] = {
                "messages": count,
                "failed": failed,
                "seconds": seconds,
                "rate": rate(count - failed, seconds),
                "client_cpu_us_per_message": 1e6 * (time.process_time() - client) / count,
                "broker_cpu_us_per_message": 1e6 * (cpu.broker_seconds() - broker) / count,
            }
    finally:
        await connection.close()
    return out


def best(
    strategies: dict[str, dict[str, float]], *, aio_pika_only: bool = False
) -> tuple[str, float]:
    """The fastest raw strategy (of the aio-pika ones only, if asked)."""
    raw = {
        k: v["rate"]
        for k, v in strategies.items()
        if not (aio_pika_only and k.startswith("frames"))
    }
    name = max(raw, key=lambda k: raw[k])
    return name, raw[name]
