"""A connection given several nodes moves to another when its node goes away, and resumes.

Two proxies in front of the local broker stand in for two cluster nodes: blocking the
proxy a connection uses is, for the client, exactly a node that died and stays down.
(The real three-node cluster is in tests/chaos/test_rabbit_cluster.py.)
"""

from __future__ import annotations

import asyncio
import random
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from yarl import URL

from outbox.amqp import connect_cluster, connect_first
from outbox.settings import Settings
from tests.integration.test_relay_support import eventually
from tests.support.tcpproxy import TcpProxy


async def _consumers(url: str, queue: str) -> int:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        return int(declared.declaration_result.consumer_count or 0)


async def _send(url: str, queue: str, body: bytes) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(body), queue, mandatory=True)


async def test_losing_a_node_moves_to_the_next_and_redeclares_and_reconsumes(
    settings: Settings,
) -> None:
    direct = settings.amqp_url.get_secret_value()
    upstream = URL(direct)
    queue_name = f"test.failover.{uuid.uuid4().hex[:8]}"
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(message.body)

    with TcpProxy(upstream.port or 5672) as a, TcpProxy(upstream.port or 5672) as b:
        hosts = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
        url = str(upstream).replace(f"{upstream.host}:{upstream.port}", hosts, 1)
        conn = await connect_cluster(url, reconnect_interval=0.2, rng=random.Random(0))
        try:
            first, second = (a, b) if a.connections_accepted else (b, a)
            assert (first.connections_accepted, second.connections_accepted) == (1, 0)
            channel = await conn.channel()
            # auto_delete: the broker drops the queue with its last consumer, so after the
            # node is lost the queue exists again only if the connection re-declared it.
            queue = await channel.declare_queue(queue_name, auto_delete=True)
            await queue.consume(on_message)
            await _send(direct, queue_name, b"before")
            assert await asyncio.wait_for(received.get(), 15) == b"before"

            first.block()  # the node dies and stays down
            await eventually(lambda: second.connections_accepted >= 1, what="moved to node 2")
            await eventually(lambda: _consumers(direct, queue_name), what="queue re-consumed")
            await _send(direct, queue_name, b"after")
            assert await asyncio.wait_for(received.get(), 15) == b"after"
            assert conn.node.port == second.port
        finally:
            await conn.close()


async def test_one_shot_tools_connect_to_the_first_node_that_answers(settings: Settings) -> None:
    upstream = URL(settings.amqp_url.get_secret_value())
    dead = "127.0.0.1:1"  # nothing listens on port 1
    hosts = f"{dead},{upstream.host}:{upstream.port}"
    url = str(upstream).replace(f"{upstream.host}:{upstream.port}", hosts, 1)
    conn = await connect_first(url, connect_timeout=5)
    async with conn:
        channel = await conn.channel()
        await channel.declare_queue(f"test.first.{uuid.uuid4().hex[:8]}", auto_delete=True)
