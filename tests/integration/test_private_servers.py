"""The private PostgreSQL cluster and RabbitMQ node the chaos suite kills and restarts.

These prove the helpers do what the chaos suite relies on: the servers come back on the
same port with their data after a graceful stop, a crash-like stop and a SIGKILL, and
the shared servers are not touched.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid

import aio_pika
import psycopg
import pytest

from tests.support.private_pg import PrivatePostgres
from tests.support.private_rabbit import PrivateRabbit


def _dsn(pg: PrivatePostgres) -> str:
    return pg.url().replace("+psycopg", "")


def _count(pg: PrivatePostgres, marker: str) -> int:
    with psycopg.connect(_dsn(pg), connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM t WHERE marker = %s", (marker,)).fetchone()
        assert row is not None
        return int(row[0])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_private_postgres_keeps_committed_rows_across_restarts_and_kill() -> None:
    marker = uuid.uuid4().hex
    with PrivatePostgres() as pg:
        assert pg.port != 5432 and pg.running
        with psycopg.connect(_dsn(pg), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (marker text)")
            conn.execute("INSERT INTO t VALUES (%s)", (marker,))

        pg.restart(mode="fast")
        assert _count(pg, marker) == 1

        # A crash-like stop kills open sessions; the next start replays WAL.
        victim = psycopg.connect(_dsn(pg))
        pg.restart(mode="immediate")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert _count(pg, marker) == 1

        pg.kill()
        assert not pg.running and not _port_open(pg.port)
        pg.start()
        assert _count(pg, marker) == 1
        root = pg.root
    assert not root.exists(), "destroy() must delete the cluster's directory"


async def _publish(url: str, queue: str, bodies: list[bytes]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for body in bodies:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue)


async def _drain(url: str, queue: str, expected: int) -> list[bytes]:
    conn = await aio_pika.connect(url)
    got: list[bytes] = []
    async with conn:
        channel = await conn.channel()
        q = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            got.append(message.body)
    return got


def _shared_node_alive() -> bool:
    result = subprocess.run(
        ["rabbitmqctl", "-n", "rabbit@localhost", "ping"], capture_output=True, timeout=60
    )
    return result.returncode == 0


async def test_private_rabbit_keeps_persistent_messages_across_stop_and_kill() -> None:
    queue = f"chaos-test-{uuid.uuid4().hex[:8]}"
    first, second = [b"a1", b"a2"], [b"b1"]
    rabbit = PrivateRabbit()
    try:
        await asyncio.to_thread(rabbit.start)
        assert rabbit.node != "rabbit@localhost" and rabbit.port != 5672
        assert rabbit.beam_pid() is not None

        await _publish(rabbit.amqp_url(), queue, first)
        await asyncio.to_thread(rabbit.stop)
        assert not _port_open(rabbit.port)
        await asyncio.to_thread(rabbit.start)

        await _publish(rabbit.amqp_url(), queue, second)
        await asyncio.to_thread(rabbit.kill)
        assert not rabbit.running and not _port_open(rabbit.port)
        await asyncio.to_thread(rabbit.start)

        assert queue in await asyncio.to_thread(rabbit.list_queues)
        assert sorted(await _drain(rabbit.amqp_url(), queue, 3)) == sorted(first + second)
        assert _shared_node_alive(), "the shared node must never be touched"
    finally:
        await asyncio.to_thread(rabbit.destroy)
    assert not rabbit.root.exists()
