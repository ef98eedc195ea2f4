"""Several raw ways to publish with confirms; the publish ceiling is the best of them.

Each strategy publishes the same real-size persistent messages through ``qa.events``
into the quorum queue ``feed.events`` (where the relay publishes), with publisher
confirms and ``mandatory=True``, using only aio-pika's public API:

- ``window-N``: a sliding window of at most N unconfirmed publishes;
- ``gather-B``: whole batches of B publishes started at once, then awaited together
  (what a simple relay does with one claimed batch);
- ``gather-B-2ch``: the same batches split over two confirming channels.

``frames-B`` writes each batch as one payload with its confirms registered, the way the
relay does (``relay/frames.py``). It is reported beside the ceiling, not counted in it:
it is the relay's own technique, not a raw aio-pika strategy.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from bench.envelopes import message_for, publish_window
from bench.stats import rate
from outbox.topology import EVENTS_EXCHANGE, queue_name

FEED_QUEUE = queue_name("feed")

KEY = "answer.created"
BATCH = 2000
WINDOWS = (250, 1000, 4000)


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


async def _frames(channel: AbstractChannel, body: bytes, count: int, batch: int) -> int:
    from relay import frames  # the relay's own technique, for comparison only

    under: Any = await channel.get_underlay_channel()
    chunk = frames.body_frame_size(under)
    failed = 0
    for start in range(0, count, batch):
        n = min(batch, count - start)
        messages = []
        for _ in range(n):
            mid = str(uuid.uuid4())
            props = frames.properties(mid, KEY, datetime.now(UTC), {})
            messages.append(
                (mid, frames.encode(under.number, chunk, EVENTS_EXCHANGE, KEY, body, props))
            )
        futures = await frames.send(under, messages)
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed += sum(isinstance(r, BaseException) for r in results)
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
        strategies[f"frames-{BATCH}"] = lambda: _frames(chans[0], body, count, BATCH)
        for name, run in strategies.items():
            await queue.purge()
            started, cpu = time.perf_counter(), time.process_time()
            failed = await run()
            seconds = time.perf_counter() - started
            out[name] = {
                "messages": count,
                "failed": failed,
                "seconds": seconds,
                "rate": rate(count - failed, seconds),
                "client_cpu_us_per_message": 1e6 * (time.process_time() - cpu) / count,
            }
    finally:
        await connection.close()
    return out


def best(strategies: dict[str, dict[str, float]]) -> tuple[str, float]:
    """The fastest raw aio-pika strategy (``frames-*`` is not one)."""
    raw = {k: v["rate"] for k, v in strategies.items() if not k.startswith("frames")}
    name = max(raw, key=lambda k: raw[k])
    return name, raw[name]
