"""JSON log lines a subscriber writes about one message carry its event_id and delivery_tag
(and the subscriber); lines about a whole batch carry the subscriber only."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from outbox import logs
from outbox.errors import PermanentMessageError
from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.subscribers import Projection, SideEffect
from tests.integration.test_feed_support import (
    amqp_message,
    broker,
    envelope_message,
    poll,
    question_event,
    running_consumer,
)
from tests.integration.test_runtime_support import dead_queue, toy_subscriber

toy_log = logging.getLogger("qa.test.toy")


@contextlib.contextmanager
def json_logs() -> Iterator[list[dict[str, Any]]]:
    """The JSON lines of every ``qa.*`` logger while the block runs (parsed at the end)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    qa = logging.getLogger("qa")
    saved = qa.level
    qa.addHandler(handler)
    qa.setLevel(logging.INFO)
    entries: list[dict[str, Any]] = []
    try:
        yield entries
    finally:
        qa.removeHandler(handler)
        qa.setLevel(saved)
        entries.extend(json.loads(line) for line in stream.getvalue().splitlines())


class Refused(PermanentMessageError):
    """550."""


async def test_side_effect_and_dead_letter_lines_carry_the_message_ids(
    settings: Settings,
) -> None:
    async def perform(_resources: Any, event: DecodedEvent) -> None:
        toy_log.info("performing %s", event.envelope.id)
        if event.data.title == "refuse me":  # type: ignore[union-attr]
            raise Refused("550 no such mailbox")

    toy = toy_subscriber({("question.created", 1): SideEffect(perform)})
    ok, refused = question_event(), question_event(title="refuse me")
    poison_id = str(uuid.uuid4())
    with json_logs() as entries:
        async with (
            dead_queue(settings, toy) as dead,
            running_consumer(settings, toy) as deliveries,
        ):
            async with broker(settings) as channel:
                for message in (
                    envelope_message(ok),
                    envelope_message(refused),
                    amqp_message(b"{not json", message_id=poison_id),
                ):
                    await channel.default_exchange.publish(message, toy.queue)
            await poll(
                "both dead letters", lambda: dead.get(str(refused.id)) and dead.get(poison_id)
            )
            await poll("ok performed", lambda: deliveries.counts[str(ok.id)])
    performing = {e["message"].split()[-1]: e for e in entries if e["logger"] == "qa.test.toy"}
    for event in (ok, refused):
        line = performing[str(event.id)]
        assert line["event_id"] == str(event.id)
        assert isinstance(line["delivery_tag"], int) and line["delivery_tag"] > 0
        assert line["subscriber"] == toy.name
    dead_lines = {
        e["event_id"]: e for e in entries if e["message"].startswith(f"{toy.name}: dead-lettered")
    }
    assert set(dead_lines) >= {str(refused.id), poison_id}  # a poison message: its message id
    assert dead_lines[poison_id]["delivery_tag"] > 0
    assert (
        dead_lines[str(refused.id)]["delivery_tag"] == performing[str(refused.id)]["delivery_tag"]
    )


async def test_projection_lines_carry_one_event_id_only_while_events_are_applied_alone(
    settings: Settings,
) -> None:
    async def apply(_conn: AsyncConnection, events: Sequence[DecodedEvent]) -> None:
        toy_log.info("applying %d", len(events))
        if any(e.data.title == "bad" for e in events):  # type: ignore[union-attr]
            raise Refused("a permanent failure of this event")

    toy = toy_subscriber({("question.created", 1): Projection(apply)}, batch_wait_ms=200)
    good, bad = question_event(), question_event(title="bad")
    with json_logs() as entries:
        async with dead_queue(settings, toy) as dead:
            async with broker(settings) as channel:  # both wait in the queue: one batch
                for event in (good, bad):
                    await channel.default_exchange.publish(envelope_message(event), toy.queue)
            async with running_consumer(settings, toy):
                await poll("the bad event dead-lettered", lambda: dead.get(str(bad.id)))
    applying = [e for e in entries if e["logger"] == "qa.test.toy"]
    batch = [e for e in applying if e["message"] == "applying 2"]
    alone = [e for e in applying if e["message"] == "applying 1"]
    assert batch and all("event_id" not in e and e["subscriber"] == toy.name for e in batch)
    assert {e["event_id"] for e in alone} == {str(good.id), str(bad.id)}
    assert all(isinstance(e["delivery_tag"], int) for e in alone)
    (isolating,) = [e for e in entries if "isolating each event" in e["message"]]
    assert "event_id" not in isolating and isolating["subscriber"] == toy.name
