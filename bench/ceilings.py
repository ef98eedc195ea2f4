"""This machine's ceilings, measured in the same run as the system they judge.

- publish: the best of several raw strategies with publisher confirms (aio-pika sliding
  windows of several sizes, whole batches gathered, two channels; batches written as
  frames with one to three in flight; see ``bench/publish_strategies.py``), persistent
  real-size messages through ``qa.events`` into the durable (quorum) ``feed.events``
  queue, i.e. exactly where the relay publishes.
- consume: raw consume + ack (one ack per message) from that queue with the consumer's
  prefetch (``settings.consumer_prefetch``).
- commit: raw psycopg, one single-row INSERT + COMMIT per transaction (1 connection, and
  several in parallel for information).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import aio_pika
import psycopg

from bench import publish_strategies
from bench.env import BenchEnv
from bench.envelopes import message_for, publish_window, sample_answer_body
from bench.stats import rate
from consumers.feed import SUBSCRIBER as FEED
from outbox.settings import Settings
from outbox.topology import declare_subscriber

FEED_QUEUE = FEED.queue


async def declare_and_purge(env: BenchEnv, settings: Settings) -> None:
    """Declare the feed topology in the private vhost and empty the feed queue."""
    connection = await aio_pika.connect_robust(env.amqp_url)
    try:
        channel = await connection.channel()
        topo = await declare_subscriber(
            connection,
            channel,
            FEED.name,
            FEED.bindings,
            settings.retry_delays,
            settings.delivery_limit,
        )
        await topo.queue.purge()
    finally:
        await connection.close()


async def publish_ceiling(env: BenchEnv, count: int, window: int) -> dict[str, float]:
    body = sample_answer_body()
    connection = await aio_pika.connect_robust(env.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange("qa.events")
        messages = (
            (message_for(body, uuid.uuid4(), "answer.created"), "answer.created")
            for _ in range(count)
        )
        result = await publish_window(exchange, messages, window)
    finally:
        await connection.close()
    return {
        "messages": count,
        "window": window,
        "body_bytes": len(body),
        "failed": result.failed,
        "seconds": result.seconds,
        "rate": rate(count - result.failed, result.seconds),
    }


async def publish_ceiling_best(env: BenchEnv, count: int) -> dict[str, Any]:
    """Every strategy in this run; ``rate`` is the best raw one. The last strategy's
    messages stay in ``feed.events`` for the consume ceiling."""
    body = sample_answer_body()
    strategies = await publish_strategies.measure(env.amqp_url, body, count)
    name, best = publish_strategies.best(strategies)
    aio_name, aio_best = publish_strategies.best(strategies, aio_pika_only=True)
    last = list(strategies.values())[-1]
    return {
        "messages": count,
        "body_bytes": len(body),
        "best_strategy": name,
        "rate": best,
        "best_aio_pika_strategy": aio_name,
        "best_aio_pika_rate": aio_best,
        "failed": last["failed"],
        "strategies": strategies,
    }


async def consume_ceiling(env: BenchEnv, count: int, prefetch: int) -> dict[str, float]:
    """Consume ``count`` messages already in ``feed.events``, acking each one."""
    connection = await aio_pika.connect_robust(env.amqp_url)
    received = 0
    done = asyncio.Event()
    first: float | None = None
    loop = asyncio.get_running_loop()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received, first
        if first is None:
            first = loop.time()
        await message.ack()
        received += 1
        if received >= count:
            done.set()

    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(FEED_QUEUE)
        started = loop.time()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=300)
        ended = loop.time()
        await queue.cancel(tag)
    finally:
        await connection.close()
    return {
        "messages": received,
        "prefetch": prefetch,
        "seconds": ended - started,
        "rate": rate(received, ended - started),
        "rate_from_first": rate(received - 1, ended - (first or started)),
    }


def _commit_loop(dsn: str, body: bytes, seconds: float, out: list[int]) -> None:
    with psycopg.connect(dsn) as conn:
        count = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            conn.execute("INSERT INTO public.bench_commit (body) VALUES (%s)", (body,))
            conn.commit()
            count += 1
        out.append(count)


def commit_ceiling(env: BenchEnv, seconds: float, parallel: int) -> dict[str, float]:
    body = sample_answer_body()
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_commit"
            " (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body bytea NOT NULL)"
        )
        conn.execute("TRUNCATE public.bench_commit")
    single: list[int] = []
    _commit_loop(env.dsn, body, seconds, single)
    many: list[int] = []
    threads = [
        threading.Thread(target=_commit_loop, args=(env.dsn, body, seconds, many))
        for _ in range(parallel)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": seconds,
        "rate": rate(single[0], seconds),
        "parallel_connections": parallel,
        "rate_parallel": rate(sum(many), seconds),
    }


def run(env: BenchEnv, settings: Settings, quick: bool) -> dict[str, dict[str, float]]:
    """All three ceilings. The publish run fills the queue the consume run then drains."""
    count = 20_000 if quick else 100_000
    asyncio.run(declare_and_purge(env, settings))
    publish = asyncio.run(publish_ceiling_best(env, count))
    consume = asyncio.run(
        consume_ceiling(env, count - int(publish["failed"]), settings.consumer_prefetch)
    )
    commit = commit_ceiling(env, seconds=2.0 if quick else 5.0, parallel=8)
    return {"publish": publish, "consume": consume, "commit": commit}
