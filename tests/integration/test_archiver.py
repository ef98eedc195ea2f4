"""The dead-letter archiver against the real broker and database: stored once, lossless,
acked only after commit (a database outage never loses a dead letter)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from consumers.runtime import archiver
from outbox.errors import StartupError
from outbox.headers import from_jsonable
from outbox.settings import Settings
from tests.integration.test_feed_support import FEED_DEAD_QUEUE, declare
from tests.support.tcpproxy import TcpProxy


async def wait_until(check: Callable[[], Any], within: float = 20.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what or check}")


def rows_for(db: Engine, column: str, value: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        query = text(f"SELECT * FROM subscribers.dead_letters WHERE {column} = :v ORDER BY id")
        return [dict(r) for r in conn.execute(query, {"v": value}).mappings()]


def dead_letter_headers(**extra: Any) -> dict[str, Any]:
    """Headers as the feed consumer writes them when it dead-letters a message."""
    return {
        "x-error-class": "SchemaViolation",
        "x-error-message": "answer.created v1 data invalid: grade: too big",
        "x-attempts": 1,
        "x-first-failed-at": datetime.now(UTC).isoformat(),
        "x-failed-queue": "feed.events",
        "x-disposition": "permanent",
        "x-dead-letter-id": str(uuid.uuid4()),
        "x-traceback": 'Traceback (most recent call last):\n  File "feed.py"...',
        "x-original-routing-key": "answer.created",
        **extra,
    }


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        ch = await connection.channel(publisher_confirms=True)
        await declare(connection, ch, settings)
        yield ch


async def publish_dead(
    channel: aio_pika.abc.AbstractChannel, body: bytes, headers: dict[str, Any], **props: Any
) -> None:
    props.setdefault("message_id", str(uuid.uuid4()))
    message = aio_pika.Message(body, headers=headers, delivery_mode=2, **props)
    await channel.default_exchange.publish(message, FEED_DEAD_QUEUE, mandatory=True)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(archiver.run_archiver(settings))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_dead_letters_are_stored_once_with_exact_body_and_headers(
    settings: Settings, channel: aio_pika.abc.AbstractChannel, db: Engine
) -> None:
    body = b'{"id": "not quite json' + bytes(range(256))
    headers = dead_letter_headers(
        tenant="t-1",
        raw=bytearray(b"\x00\x01\xff"),
        nested={"a": [1, "two", 3.5, True], "$bytes": "looks like a tag"},
        sent_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        price=Decimal("12.34"),
    )
    message_id = str(uuid.uuid4())
    sentinel_headers = dead_letter_headers()
    async with running(Settings(archiver_metrics_port=0)):
        await publish_dead(channel, body, headers, message_id=message_id, type="answer.created")
        # The same dead letter delivered again (e.g. the archiver died before its ack).
        await publish_dead(channel, body, headers, message_id=message_id, type="answer.created")
        await publish_dead(channel, b"{}", sentinel_headers)
        sentinel = sentinel_headers["x-dead-letter-id"]
        await wait_until(lambda: rows_for(db, "dedup_key", sentinel), what="sentinel stored")
    rows = rows_for(db, "message_id", message_id)
    assert len(rows) == 1
    row = rows[0]
    assert row["body"] == body
    assert from_jsonable(row["headers"]) == headers
    assert row["dedup_key"] == headers["x-dead-letter-id"]
    assert (row["error_class"], row["disposition"], row["attempts"]) == (
        "SchemaViolation",
        "permanent",
        1,
    )
    assert (row["failed_queue"], row["routing_key"], row["event_type"]) == (
        "feed.events",
        "answer.created",
        "answer.created",
    )
    assert row["traceback"].startswith("Traceback")
    assert row["status"] == "dead"
    assert row["properties"]["message_id"] == message_id


async def test_broker_dead_lettered_message_is_stored_as_delivery_limit(
    settings: Settings, channel: aio_pika.abc.AbstractChannel, db: Engine
) -> None:
    # A private quorum queue with the same backstop as feed.events, but limit 1.
    name = f"archiver-test.{uuid.uuid4().hex[:8]}"
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": FEED_DEAD_QUEUE,
        },
    )
    message_id = str(uuid.uuid4())
    body = b'{"crash": "loop"}'
    try:
        await channel.default_exchange.publish(
            aio_pika.Message(body, message_id=message_id, type="question.created"), name
        )
        # Crash-loop the message: every delivery is handed back until the broker gives up.
        for _ in range(20):
            got = await queue.get(fail=False, timeout=5)
            if got is None:
                break
            await got.nack(requeue=True)
        async with running(Settings(archiver_metrics_port=0)):
            rows = await wait_until(
                lambda: rows_for(db, "message_id", message_id), what="broker dead letter stored"
            )
    finally:
        await queue.delete(if_unused=False, if_empty=False)
    assert len(rows) == 1
    row = rows[0]
    assert row["disposition"] == "delivery-limit"
    assert row["error_class"] == "DeliveryLimitExceeded"
    assert row["failed_queue"] == name
    assert row["body"] == body
    assert row["dedup_key"].startswith("x-death:")
    assert from_jsonable(row["headers"])["x-death"][0]["reason"] == "delivery_limit"


def _via(proxy: TcpProxy, settings: Settings) -> str:
    url = make_url(settings.database_url.get_secret_value())
    return url.set(port=proxy.port).render_as_string(hide_password=False)


async def test_database_outage_leaves_the_dead_letter_in_the_queue_until_stored(
    settings: Settings,
    channel: aio_pika.abc.AbstractChannel,
    db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A short in-process budget so the hand-back-to-the-broker path runs too.
    monkeypatch.setattr(archiver, "STORE_RETRY_BUDGET_SECONDS", 0.5)
    with TcpProxy(5432) as proxy:
        proxied = Settings(database_url=_via(proxy, settings), archiver_metrics_port=0)
        warm = dead_letter_headers()
        held = dead_letter_headers()
        async with running(proxied):
            await publish_dead(channel, b"{}", warm)
            key = warm["x-dead-letter-id"]
            await wait_until(lambda: rows_for(db, "dedup_key", key), what="archiver ready")
            proxy.block()
            requeued = metric("qa_dead_letters_requeued_total")
            await publish_dead(channel, b'{"held": true}', held)
            await wait_until(
                lambda: metric("qa_dead_letters_requeued_total") >= requeued + 2,
                what="the letter handed back to the broker twice",
            )
            assert rows_for(db, "dedup_key", held["x-dead-letter-id"]) == []
        # The archiver stopped while the database was still away; a new one stores it.
        proxy.unblock()
        async with running(proxied):
            rows = await wait_until(
                lambda: rows_for(db, "dedup_key", held["x-dead-letter-id"]),
                what="held letter stored after the outage",
            )
    assert len(rows) == 1 and rows[0]["body"] == b'{"held": true}'


async def test_archiver_that_cannot_reach_the_database_fails_to_start(
    settings: Settings,
) -> None:
    with TcpProxy(5432) as proxy:
        proxy.block()
        broken = Settings(
            database_url=_via(proxy, settings),
            archiver_metrics_port=0,
            startup_timeout_seconds=0.5,
        )
        with pytest.raises(StartupError, match=r"database postgresql\S+ unreachable"):
            await asyncio.wait_for(archiver.run_archiver(broken), 30)
