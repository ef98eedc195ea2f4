"""The whole dead-letter path with the real feed consumer, archiver, relay and CLI:
poison -> feed.dead -> store; exhausted -> fixed -> replayed (twice) -> applied once,
delivered only to the queue that failed it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url, text

from consumers.runtime.archiver import run_archiver
from outbox.settings import Settings
from outbox.topology import EVENTS_EXCHANGE
from tests.integration.test_feed_support import (
    amqp_message,
    answer_event,
    broker,
    feed_row,
    inbox_ids,
    poll,
    publish,
    publish_events,
    question_event,
    running_consumer,
)
from tests.integration.test_relay_support import running_relay, unique_lock_key
from tests.support.tcpproxy import TcpProxy

QA_OPS = str(Path(sys.executable).parent / "qa-ops")


@contextlib.asynccontextmanager
async def archiving(settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(
        run_archiver(settings.model_copy(update={"archiver_metrics_port": 0}))
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stored(db: Engine, message_id: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        query = text("SELECT * FROM subscribers.dead_letters WHERE message_id = :m ORDER BY id")
        return [dict(r) for r in conn.execute(query, {"m": message_id}).mappings()]


def replay_rows(db: Engine, letter_id: int) -> list[dict[str, Any]]:
    with db.connect() as conn:
        query = text(
            "SELECT * FROM qa.outbox WHERE aggregate_type = 'replay' AND aggregate_id = :a"
        )
        return [dict(r) for r in conn.execute(query, {"a": str(letter_id)}).mappings()]


POISON = [
    (b"{not json", "answer.created", "UndecodableBody"),
    (b'{"id": 1}', "question.created", "SchemaViolation"),
]


@pytest.mark.parametrize(("body", "routing_key", "error_class"), POISON)
async def test_poison_on_qa_events_ends_up_in_the_store_with_its_error_class(
    settings: Settings, db: Engine, body: bytes, routing_key: str, error_class: str
) -> None:
    message_id = str(uuid.uuid4())
    async with broker(settings) as channel, running_consumer(settings), archiving(settings):
        await publish(channel, amqp_message(body, message_id=message_id), routing_key)
        (row,) = await poll("poison archived", lambda: stored(db, message_id))
    assert row["error_class"] == error_class
    assert (row["disposition"], row["attempts"], row["status"]) == ("permanent", 1, "dead")
    assert row["body"] == body
    assert (row["failed_queue"], row["routing_key"]) == ("feed.events", routing_key)
    assert error_class in row["traceback"]


@pytest.fixture
def feed_db_proxy(settings: Settings) -> Iterator[tuple[TcpProxy, str]]:
    url = make_url(settings.database_url.get_secret_value())
    with TcpProxy(url.port or 5432, url.host or "127.0.0.1") as proxy:
        yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)


def qa_ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QA_OPS, "dlq", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


async def test_exhausted_then_fixed_then_replayed_twice_applies_once_to_the_failed_queue_only(
    settings: Settings, db: Engine, feed_db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, via = feed_db_proxy
    event = question_event()
    overrides = {"feed_database_url": via, "retry_delays": [0.2, 0.4]}
    async with broker(settings) as channel, archiving(settings):
        async with running_consumer(settings, **overrides):
            proxy.block()
            try:
                await publish_events(channel, [event])
                (row,) = await poll("exhausted letter archived", lambda: stored(db, str(event.id)))
            finally:
                proxy.unblock()
        assert (row["disposition"], row["error_class"]) == ("exhausted", "OperationalError")
        assert inbox_ids(db, [event.id]) == set()

        # Another subscriber of qa.events: it must not get the replay.
        other = await channel.declare_queue(
            f"other-subscriber.{uuid.uuid4().hex[:8]}", exclusive=True
        )
        await other.bind(EVENTS_EXCHANGE, routing_key="#")

        first = qa_ops("replay", str(row["id"]), "--yes", "--actor", "ops-test", "--json")
        assert first.returncode == 0, first.stderr
        second = qa_ops("replay", str(row["id"]), "--yes", "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)[0]["outcome"] == "already replayed"
        (outbox,) = replay_rows(db, row["id"])
        assert outbox["event_id"] == event.id

        async with (
            running_consumer(settings, **overrides),
            running_relay(
                settings, relay_lock_key=unique_lock_key(), relay_poll_interval_seconds=0.1
            ),
        ):
            await poll("replay applied", lambda: inbox_ids(db, [event.id]))
            # A later answer still applies on top: the feed is consistent.
            answer = answer_event(uuid.UUID(event.data["question_id"]))
            await publish_events(channel, [answer])
            await poll("answer applied", lambda: inbox_ids(db, [answer.id]))
        assert replay_rows(db, row["id"])[0]["published_at"] is not None
        seen = []
        while (got := await other.get(fail=False, timeout=5)) is not None:
            seen.append(got.message_id)
            await got.ack()
        # The subscriber works (it got the answer) but never saw the replayed event.
        assert str(answer.id) in seen and str(event.id) not in seen

    feed = feed_row(db, uuid.UUID(event.data["question_id"]))
    assert feed is not None and feed["title"] and feed["answer_count"] == 1
    with db.connect() as conn:
        status = conn.scalar(
            text("SELECT status FROM subscribers.dead_letters WHERE id = :i"), {"i": row["id"]}
        )
    assert status == "replayed"
