"""``qa-consumer feed`` as a real process: killed mid-stream it loses and doubles nothing;
SIGTERM stops it cleanly; unreachable services end it with exit 1 and one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from outbox.events import Envelope
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    answer_event,
    broker,
    inbox_ids,
    poll,
    publish_events,
    question_event,
)
from tests.support.procs import BIN, spawn
from tests.support.tcpproxy import free_port

QUESTIONS = 400
ANSWERS_PER_QUESTION = 3


def _stream() -> tuple[list[uuid.UUID], list[Envelope]]:
    """Questions and their answers, interleaved so answers often precede their question."""
    qids = [uuid.uuid4() for _ in range(QUESTIONS)]
    events: list[Envelope] = []
    for i, qid in enumerate(qids):
        answers = [answer_event(qid, m) for m in range(ANSWERS_PER_QUESTION)]
        events.extend(
            [*answers[:1], question_event(qid), *answers[1:]]
            if i % 2
            else [question_event(qid), *answers]
        )
    return qids, events


def _answer_counts(db: Engine, qids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT question_id, answer_count FROM feed.questions"
                " WHERE question_id = ANY(CAST(:q AS uuid[])) AND title IS NOT NULL"
            ),
            {"q": qids},
        )
        return {row[0]: row[1] for row in rows}


async def test_sigkill_and_sigterm_mid_stream_lose_nothing_and_apply_nothing_twice(
    settings: Settings, db: Engine, tmp_path: Path
) -> None:
    consumer = spawn("feed", tmp_path, {"QA_CONSUMER_BATCH_SIZE": "32"})
    await asyncio.to_thread(consumer.start)
    qids, events = _stream()
    ids = {e.id for e in events}

    async def produce() -> None:
        async with broker(settings) as channel:
            for start in range(0, len(events), 20):
                # Flat out: the consumer always has a batch in flight when it is stopped.
                await asyncio.gather(
                    *(publish_events(channel, [e]) for e in events[start : start + 20])
                )

    producer = asyncio.create_task(produce())
    try:
        await poll("first events applied", lambda: len(inbox_ids(db, ids)) >= 200, timeout=60)
        await asyncio.to_thread(consumer.kill)  # SIGKILL, wherever it is
        await asyncio.to_thread(consumer.start)
        await poll("more events applied", lambda: len(inbox_ids(db, ids)) >= 600, timeout=60)
        assert await asyncio.to_thread(consumer.terminate) == 0  # SIGTERM: clean stop
        await asyncio.to_thread(consumer.start)
        await poll("still more applied", lambda: len(inbox_ids(db, ids)) >= 1000, timeout=60)
        await asyncio.to_thread(consumer.kill)
        await asyncio.to_thread(consumer.start)
        await producer
        await poll("every event applied", lambda: inbox_ids(db, ids) == ids, timeout=120)
        counts = _answer_counts(db, qids)
        assert len(counts) == QUESTIONS
        assert set(counts.values()) == {ANSWERS_PER_QUESTION}, consumer.log_tail()
        assert consumer.kills == 2
    finally:
        producer.cancel()
        await asyncio.to_thread(consumer.terminate)


def test_metrics_are_served_while_consuming(settings: Settings, tmp_path: Path) -> None:
    consumer = spawn("feed", tmp_path).start()
    try:
        port = consumer.env["QA_CONSUMER_METRICS_PORT"]
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for name in (
            "qa_subscriber_events_applied_total",
            "qa_subscriber_duplicates_skipped_total",
            "qa_subscriber_retried_total",
            "qa_subscriber_dead_lettered_total",
            "qa_subscriber_batch_duration_seconds",
            "qa_subscriber_commit_to_applied_seconds",
        ):
            assert name in body
    finally:
        assert consumer.terminate() == 0


def _run_until_exit(
    env_overrides: dict[str, str], services: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **services,
        "QA_STARTUP_TIMEOUT_SECONDS": "1",
        "QA_CONSUMER_METRICS_PORT": "0",
        **env_overrides,
    }
    result = subprocess.run(
        [str(BIN / "qa-consumer"), "feed"], env=env, capture_output=True, text=True, timeout=60
    )
    return result


def test_unreachable_database_exits_1_with_one_line(services: dict[str, str]) -> None:
    dead = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/qa"
    result = _run_until_exit({"QA_FEED_DATABASE_URL": dead}, services)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qa-consumer feed: cannot start: feed database")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_exits_1_with_one_line(services: dict[str, str]) -> None:
    dead = f"amqp://guest:secret@127.0.0.1:{free_port()}/"
    result = _run_until_exit({"QA_AMQP_URL": dead}, services)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qa-consumer feed: cannot start: RabbitMQ")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
