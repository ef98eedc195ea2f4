"""Helpers shared by the relay tests (integration and e2e). Holds no tests itself.

Tests insert outbox rows directly, each with a routing key unique to the test, and
read what the relay published from their own queue bound to ``qa.events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from sqlalchemy import Engine, text

from outbox.settings import Settings
from outbox.topology import declare_exchange
from relay.relay import Relay

INSERT_SQL = text(
    """
    INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id, exchange,
                           routing_key, body, headers)
    VALUES (:event_id, :event_type, 'test', :aggregate_id, :exchange, :routing_key, :body,
            CAST(:headers AS jsonb))
    RETURNING id
    """
)


@dataclass(frozen=True)
class Row:
    id: int
    event_id: uuid.UUID
    body: bytes


def row_params(
    routing_key: str,
    *,
    body: bytes | None = None,
    aggregate_id: str = "agg",
    exchange: str = "qa.events",
    headers: dict[str, Any] | None = None,
    event_type: str = "test.event",
) -> dict[str, Any]:
    event_id = uuid.uuid4()
    return {
        "event_id": event_id,
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "exchange": exchange,
        "routing_key": routing_key,
        "body": body if body is not None else orjson.dumps({"id": str(event_id)}),
        "headers": orjson.dumps(headers or {}).decode(),
    }


def insert_rows(db: Engine, params: list[dict[str, Any]]) -> list[Row]:
    """Insert rows in one committed transaction, in list order (ids ascend)."""
    with db.begin() as conn:
        return [
            Row(conn.execute(INSERT_SQL, p).scalar_one(), p["event_id"], p["body"]) for p in params
        ]


def outbox_state(db: Engine, ids: list[int]) -> dict[int, dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, published_at, attempts, last_error, next_attempt_at"
                " FROM qa.outbox WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).mappings()
        return {r["id"]: dict(r) for r in rows}


def published_ids(db: Engine, ids: list[int]) -> set[int]:
    return {i for i, r in outbox_state(db, ids).items() if r["published_at"] is not None}


async def eventually(
    check: Callable[[], Any], within: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(interval)


class Collector:
    """A test queue bound to ``qa.events`` under one routing key, collecting messages."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue
        self.messages: list[AbstractIncomingMessage] = []
        self._tag: str | None = None

    async def start(self) -> None:
        async def on_message(message: AbstractIncomingMessage) -> None:
            self.messages.append(message)
            await message.ack()

        self._tag = await self.queue.consume(on_message)

    def ids(self) -> list[str]:
        return [m.message_id or "" for m in self.messages]

    async def wait_for(self, event_ids: set[str], within: float = 15.0) -> None:
        await eventually(lambda: event_ids <= set(self.ids()), within, what="messages")


@contextlib.asynccontextmanager
async def collector(
    url: str, routing_key: str | None = None, arguments: dict[str, Any] | None = None
) -> AsyncIterator[Collector]:
    """A consuming queue named after (and bound with) ``routing_key``."""
    key = routing_key or f"test.{uuid.uuid4().hex}"
    connection = await aio_pika.connect_robust(url)
    try:
        channel: AbstractChannel = await connection.channel()
        exchange = await declare_exchange(channel)
        queue = await channel.declare_queue(key, auto_delete=True, arguments=arguments or None)
        await queue.bind(exchange, routing_key=key)
        col = Collector(queue)
        await col.start()
        yield col
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def running_relay(
    settings: Settings,
    amqp_url: str | None = None,
    name: str = "test-relay",
    leader: bool = True,
    **overrides: Any,
) -> AsyncIterator[Relay]:
    """An in-process relay (a task) on its own robust connection; cancelled on exit.

    With ``leader`` it waits until the relay leads; otherwise until it stands by."""
    settings = settings.model_copy(update={"relay_metrics_port": 0, **overrides})
    connection = await aio_pika.connect_robust(
        amqp_url or settings.amqp_url.get_secret_value(), reconnect_interval=0.5
    )
    relay = Relay(settings, connection, name=name)
    task = asyncio.create_task(relay.run())
    try:
        if leader:
            await eventually(lambda: relay.is_leader or task.done(), 10, what="leadership")
        else:
            await eventually(lambda: _standing_by(settings, name) or task.done(), 10)
        if task.done():
            task.result()
        yield relay
    finally:
        task.cancel()
        # A relay that ignores its cancellation must fail the test, not hang the suite.
        done, _ = await asyncio.wait({task}, timeout=60)
        await connection.close()
        assert task in done, "the relay did not stop within 60 s of being cancelled"
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _standing_by(settings: Settings, name: str) -> bool:
    """The relay's lock connection exists (it is polling for the lock)."""
    from sqlalchemy import create_engine

    engine = create_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": f"{name}-lock"},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def unique_lock_key() -> int:
    """Each test elects among its own relays only."""
    return uuid.uuid4().int >> 66
