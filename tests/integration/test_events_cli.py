"""`qa-ops events show / for-question`: delivered, pending, retrying, dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from typer.testing import CliRunner

from ops import cli
from outbox.db import make_async_engine
from outbox.events import QuestionCreatedV1, new_envelope
from outbox.headers import to_jsonable
from outbox.models import DeadLetter, InboxEntry
from outbox.settings import Settings
from outbox.topology import retry_queue_arguments, retry_queue_name
from outbox.uow import UnitOfWork

FEED_QUEUE = "feed.events"
QA_OPS = str(Path(sys.executable).parent / "qa-ops")
RUNNER = CliRunner()
# The longest default tier: a message put there stays for the whole test.
TIER_SECONDS = 600.0


def events(*args: str) -> Any:
    result = RUNNER.invoke(cli.app, ["events", *args])
    return result


def show_json(event_id: uuid.UUID, *extra: str) -> dict[str, Any]:
    result = events("show", str(event_id), "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _feed(out: dict[str, Any]) -> dict[str, Any]:
    """The feed's line of a journey (every registered subscriber has one)."""
    (feed,) = [s for s in out["subscribers"] if s["name"] == "feed"]
    return dict(feed)


async def _write_event(settings: Settings, qid: uuid.UUID) -> uuid.UUID:
    engine = make_async_engine(settings.database_url, application_name="test-journey")
    try:
        envelope = new_envelope(
            "question.created",
            "question",
            qid,
            QuestionCreatedV1(
                question_id=qid,
                title="Why is the sky blue?",
                subject="physics",
                grade=7,
                author="journey",
                created_at=datetime.now(UTC),
            ),
        )
        async with UnitOfWork(async_sessionmaker(engine)) as uow:
            uow.add_event(envelope)
            await uow.commit()
        return envelope.id
    finally:
        await engine.dispose()


def write_event(settings: Settings, qid: uuid.UUID | None = None) -> uuid.UUID:
    return asyncio.run(_write_event(settings, qid or uuid.uuid4()))


def mark_published(db: Engine, event_id: uuid.UUID) -> None:
    with db.begin() as conn:
        conn.execute(
            text("UPDATE qa.outbox SET published_at = now() WHERE event_id = :e"), {"e": event_id}
        )


async def _to_retry_tier(settings: Settings, event_id: uuid.UUID, attempts: int) -> str:
    tier = retry_queue_name("feed", TIER_SECONDS)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            tier, durable=True, arguments=retry_queue_arguments("feed", TIER_SECONDS)
        )
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"{}",
                message_id=str(event_id),
                headers={"x-attempts": attempts, "x-error-class": "OperationalError"},
            ),
            routing_key=tier,
        )
    return tier


async def _tier_depth(settings: Settings, tier: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(tier, passive=True)
        return int(queue.declaration_result.message_count or 0)


def test_pending_event_waits_in_the_outbox(settings: Settings) -> None:
    event_id = write_event(settings)
    out = show_json(event_id, "--no-broker")
    assert out["found"] is True
    assert out["outbox_status"] == "pending"
    assert out["outbox"]["published_at"] is None and out["outbox"]["attempts"] == 0
    assert {s["status"] for s in out["subscribers"]} == {"not published"}


def test_failing_row_shows_attempts_and_last_error(settings: Settings, db: Engine) -> None:
    event_id = write_event(settings)
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE qa.outbox SET attempts = 3, last_error = 'unroutable: no binding'"
                " WHERE event_id = :e"
            ),
            {"e": event_id},
        )
    out = show_json(event_id, "--no-broker")
    assert out["outbox_status"] == "failing"
    assert (out["outbox"]["attempts"], out["outbox"]["last_error"]) == (3, "unroutable: no binding")


def test_delivered_event_shows_the_inbox_time(settings: Settings, db: Engine) -> None:
    event_id = write_event(settings)
    mark_published(db, event_id)
    out = show_json(event_id, "--no-broker")
    assert _feed(out)["status"] == "waiting"  # published, not applied yet
    with db.begin() as conn:
        conn.execute(
            insert(InboxEntry).values(subscriber="feed", event_id=event_id, event_type="q")
        )
    out = show_json(event_id, "--no-broker")
    assert out["outbox_status"] == "published"
    feed = _feed(out)
    assert feed["status"] == "applied" and feed["applied_at"] is not None


def test_purged_event_is_explained_by_retention(settings: Settings, db: Engine) -> None:
    event_id = write_event(settings)
    with db.begin() as conn:
        conn.execute(
            insert(InboxEntry).values(subscriber="feed", event_id=event_id, event_type="q")
        )
        conn.execute(text("DELETE FROM qa.outbox WHERE event_id = :e"), {"e": event_id})
    out = show_json(event_id, "--no-broker")
    assert out["outbox_status"] == "purged" and out["outbox"] is None
    assert _feed(out)["status"] == "applied"


def test_retrying_event_is_seen_in_its_tier_and_left_there(settings: Settings, db: Engine) -> None:
    event_id = write_event(settings)
    mark_published(db, event_id)
    tier = asyncio.run(_to_retry_tier(settings, event_id, attempts=2))
    before = asyncio.run(_tier_depth(settings, tier))
    out = show_json(event_id)
    feed = _feed(out)
    assert feed["status"] == "retrying"
    assert (feed["retry_queue"], feed["attempts"], feed["error_class"]) == (
        tier,
        2,
        "OperationalError",
    )
    assert asyncio.run(_tier_depth(settings, tier)) == before, "peeking must not consume"
    # Without the broker the same event only shows as published and waiting.
    assert _feed(show_json(event_id, "--no-broker"))["status"] == "waiting"


def test_dead_lettered_event_names_its_dead_letter(settings: Settings, db: Engine) -> None:
    qid = uuid.uuid4()
    event_id = write_event(settings, qid)
    mark_published(db, event_id)
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    with db.begin() as conn:
        letter_id = conn.scalar(
            insert(DeadLetter)
            .values(
                dedup_key=str(uuid.uuid4()),
                message_id=str(event_id),
                event_type="question.created",
                routing_key="question.created",
                failed_queue=FEED_QUEUE,
                subscriber="feed",
                body=json.dumps({"id": str(event_id), "aggregate_id": str(qid)}).encode(),
                properties={},
                headers=to_jsonable({"traceparent": traceparent}),
                error_class="SchemaViolation",
                error_message="data.grade: too big",
                disposition="permanent",
                attempts=1,
                dead_lettered_at=datetime.now(UTC),
            )
            .returning(DeadLetter.id)
        )
        # The outbox row is gone (retention): the journey still finds the dead letter.
        conn.execute(text("DELETE FROM qa.outbox WHERE event_id = :e"), {"e": event_id})
    out = show_json(event_id, "--no-broker")
    feed = _feed(out)
    assert feed["status"] == "dead-lettered"
    assert feed["error_class"] == "SchemaViolation"
    assert [d["id"] for d in feed["dead_letters"]] == [letter_id]
    assert out["trace_id"] == traceparent.split("-")[1]
    # ...and so does the question's listing, through the dead letter's body.
    listing = RUNNER.invoke(cli.app, ["events", "for-question", str(qid), "--json", "--no-broker"])
    assert listing.exit_code == 0, listing.output
    assert [j["event_id"] for j in json.loads(listing.stdout)] == [str(event_id)]


def test_unknown_event_and_bad_id(settings: Settings) -> None:
    assert events("show", str(uuid.uuid4()), "--no-broker").exit_code == 1
    assert events("show", "not-a-uuid").exit_code == 2
    assert events("for-question", str(uuid.uuid4()), "--no-broker").exit_code == 1


def test_console_script_renders_a_table(settings: Settings) -> None:
    qid = uuid.uuid4()
    event_id = write_event(settings, qid)
    done = subprocess.run(
        [QA_OPS, "events", "for-question", str(qid)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 0, done.stderr
    assert str(event_id) in done.stdout
    assert "pending" in done.stdout and "not published" in done.stdout


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
