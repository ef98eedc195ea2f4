"""A v2 event and a subscriber declared only for v1 coexist (real API, relay, broker, runtime).

The API emits ``answer.created`` version 2. The feed declares versions 1 and 2 and keeps the
question state v2 carries; a toy subscriber declared only for version 1 receives the same
event converted down to version 1 in its decode path. An ``answer.created`` version 3 - a
version nobody declared - is dead-lettered by both on its first delivery, and neither
stops consuming.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncConnection

from outbox.events import AnswerCreatedV1, DecodedEvent, Envelope
from outbox.settings import Settings
from outbox.subscribers import Projection
from tests.integration.test_api_helpers import make_user, post_question, running
from tests.integration.test_feed_support import (
    broker,
    envelope_message,
    feed_row,
    poll,
    publish,
    running_consumer,
)
from tests.integration.test_relay_support import eventually, running_relay, unique_lock_key
from tests.integration.test_runtime_support import dead_queue, toy_subscriber


def _published(db: Engine, qid: str) -> bool:
    with db.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM qa.outbox WHERE aggregate_id = :q AND published_at IS NULL"),
            {"q": qid},
        ).scalar_one()
    return pending == 0


async def test_v1_only_subscriber_gets_v2_as_v1_and_an_undeclared_version_is_dead_lettered(
    settings: Settings, db: Engine
) -> None:
    seen: list[DecodedEvent] = []

    async def record(conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
        seen.extend(events)

    legacy = toy_subscriber({("answer.created", 1): Projection(record)})
    author = make_user(db)
    async with (
        dead_queue(settings, legacy) as dead,
        running_consumer(settings, legacy) as legacy_deliveries,
        running_consumer(settings) as feed_deliveries,
    ):
        async with running(settings) as client:
            question = await post_question(client, author, title="Before edit")
            qid = question["id"]
            await client.patch(
                f"/questions/{qid}", json={"title": "After edit"}, headers=author.headers
            )
            answer = await client.post(
                f"/questions/{qid}/answers", json={"body": "b"}, headers=author.headers
            )
            assert answer.status_code == 201
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await eventually(lambda: _published(db, qid), 30, what="events published")
        await poll("legacy got the answer", lambda: seen)
        await poll(
            "feed applied the v2 answer",
            lambda: (feed_row(db, uuid.UUID(qid)) or {}).get("answer_count") == 1,
        )

        # A version nobody declared: dead-lettered at once by both, nothing else changes.
        future = Envelope.model_validate_json(_answer_v2_body(db, qid)).model_copy(
            update={"id": uuid.uuid4(), "version": 3}
        )
        async with broker(settings) as channel:
            await publish(channel, envelope_message(future), "answer.created")
        await poll("v3 dead-lettered", lambda: dead.get(str(future.id)))

    (event,) = seen
    assert event.envelope.type == "answer.created"
    assert event.envelope.version == 1
    assert isinstance(event.data, AnswerCreatedV1)
    assert str(event.data.question_id) == qid
    assert str(event.data.answer_id) == answer.json()["id"]
    letter = dead.get(str(future.id))
    assert letter is not None
    assert (letter.headers or {}).get("x-error-class") == "UnknownEventType"
    assert legacy_deliveries.counts[str(future.id)] == 1  # first delivery, no retries
    assert feed_deliveries.counts[str(future.id)] == 1
    row = feed_row(db, uuid.UUID(qid))
    assert row is not None
    assert (row["title"], row["answer_count"]) == ("After edit", 1)


def _answer_v2_body(db: Engine, qid: str) -> bytes:
    with db.connect() as conn:
        body: bytes = conn.execute(
            text(
                "SELECT body FROM qa.outbox"
                " WHERE aggregate_id = :q AND event_type = 'answer.created'"
            ),
            {"q": qid},
        ).scalar_one()
    return body
