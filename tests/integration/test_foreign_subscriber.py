"""The README's foreign subscriber (examples/foreign_subscriber.py, pika) against the real
broker: events written by the real API and users CLI code, published by the real relay,
received and decoded by exactly the example's code, every event type, each valid against
the AsyncAPI document's payload schema for its type and version."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import aio_pika
import jsonschema
import pika
from sqlalchemy import Engine, text

from outbox import users
from outbox.asyncapi import document, message_id
from outbox.events import EVENT_SCHEMAS
from outbox.settings import Settings
from outbox.topology import declare_exchange
from tests.integration.test_api_helpers import make_user, post_question, running
from tests.integration.test_relay_support import eventually, running_relay, unique_lock_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "foreign_subscriber.py"
ROUTING_KEYS = ("question.*", "answer.*", "user.*")


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("foreign_subscriber", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validator(event: dict[str, Any]) -> jsonschema.Draft202012Validator:
    doc = document()
    mid = message_id(event["type"], event["version"])
    ref = doc["components"]["messages"][mid]["payload"]["$ref"]
    payload = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return jsonschema.Draft202012Validator({**payload, "components": doc["components"]})


async def _service_exchange(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        await declare_exchange(await connection.channel())


def _unpublished(db: Engine, event_ids: set[uuid.UUID]) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM qa.outbox"
                    " WHERE event_id = ANY(:ids) AND published_at IS NULL"
                ),
                {"ids": list(event_ids)},
            ).scalar_one()
        )


async def test_foreign_pika_subscriber_receives_and_decodes_every_event_type(
    settings: Settings, db: Engine
) -> None:
    example = _example()
    url = settings.amqp_url.get_secret_value()
    queue = f"foreign-team.qa-events.{uuid.uuid4().hex[:8]}"
    await _service_exchange(url)  # the service runs first (the example declares passively)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    example.declare(connection.channel(), queue, ROUTING_KEYS)  # bound before anything is sent
    connection.close()

    author = make_user(db)
    name = f"foreign-{uuid.uuid4().hex[:8]}"
    async with running(settings) as client:
        question = await post_question(client, author, title="First title")
        qid = question["id"]
        edited = await client.patch(
            f"/questions/{qid}", json={"title": "Edited title"}, headers=author.headers
        )
        assert edited.status_code == 200
        answer = await client.post(
            f"/questions/{qid}/answers", json={"body": "42"}, headers=author.headers
        )
        assert answer.status_code == 201
    with db.begin() as conn:
        users.create(conn, name, "first@example.test")
        users.change(conn, name, email="second@example.test")
    with db.connect() as conn:
        ours = {
            row[0]
            for row in conn.execute(
                text("SELECT event_id FROM qa.outbox WHERE aggregate_id IN (:q, :u)"),
                {"q": qid, "u": name},
            )
        }
    assert len(ours) == 5

    async with running_relay(settings, relay_lock_key=unique_lock_key()):
        await eventually(lambda: _unpublished(db, ours) == 0, 30, what="events published")

    received: list[dict[str, Any]] = []
    titles = example.LatestTitles()

    def handle(event: dict[str, Any]) -> None:
        if uuid.UUID(event["id"]) in ours:
            received.append(event)
            titles(event)

    deadline = time.monotonic() + 60
    await asyncio.to_thread(
        example.subscribe,
        url,
        queue,
        handle,
        ROUTING_KEYS,
        lambda: len({e["id"] for e in received}) == len(ours) or time.monotonic() > deadline,
    )
    try:
        assert {uuid.UUID(e["id"]) for e in received} == ours
        newest = {t: max(v for tt, v in EVENT_SCHEMAS if tt == t) for t, _ in EVENT_SCHEMAS}
        assert {(e["type"], e["version"]) for e in received} == set(newest.items())
        by_type = {e["type"]: e["sequence"] for e in received}
        assert by_type == {
            "question.created": 1,
            "question.edited": 2,
            "answer.created": 3,
            "user.registered": 1,
            "user.updated": 2,
        }
        for event in received:
            errors = list(_validator(event).iter_errors(event))
            assert not errors, (event["type"], [e.message for e in errors])
        # created (1) -> edited (2) -> answered (3, carrying the edited title)
        assert titles.questions[qid] == (3, "Edited title", question["subject"], 7)
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.channel().queue_delete(queue)
        connection.close()
