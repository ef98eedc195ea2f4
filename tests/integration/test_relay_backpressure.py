"""Broker backpressure: a memory alarm on a private RabbitMQ node blocks publishers.

``rabbitmqctl set_vm_memory_high_watermark 0`` on the test's own node (never the shared
one) raises the alarm; RabbitMQ sends ``connection.blocked`` and stops reading from
publishing connections. The relay must stop claiming (no attempt charged, no hot loop,
no transaction left open), show ``qa_relay_broker_blocked 1``, let rows pile up, and
drain everything once the alarm clears; real API writes go on meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from outbox.settings import Settings
from tests.integration.test_api_helpers import make_user, post_question, running
from tests.integration.test_relay_faults import work_session_idle
from tests.integration.test_relay_support import (
    Collector,
    collector,
    eventually,
    insert_rows,
    outbox_state,
    row_params,
    running_relay,
    unique_lock_key,
)
from tests.support.private_rabbit import PrivateRabbit


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


@pytest.fixture
async def rabbit() -> AsyncIterator[PrivateRabbit]:
    node = PrivateRabbit()
    try:
        await asyncio.to_thread(node.start)
        yield node
    finally:
        await asyncio.to_thread(node.destroy)


async def alarm(node: PrivateRabbit, watermark: str) -> None:
    await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", watermark)


def maintenance_query_start(db: Engine, name: str) -> object:
    """When the relay's maintenance connection last ran a query (every few seconds)."""
    with db.connect() as conn:
        return conn.execute(
            text("SELECT max(query_start) FROM pg_stat_activity WHERE application_name = :n"),
            {"n": f"{name}-maintenance"},
        ).scalar_one()


async def two_maintenance_rounds(db: Engine, name: str) -> None:
    """Let the relay's event loop demonstrably run on for two maintenance rounds."""
    for _ in range(2):
        seen = maintenance_query_start(db, name)
        await eventually(
            lambda seen=seen: maintenance_query_start(db, name) != seen, 30, what="a round"
        )


async def test_blocked_broker_stops_claiming_charges_nothing_and_everything_drains_after(
    settings: Settings, db: Engine, rabbit: PrivateRabbit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qa.relay")
    key = f"test.{uuid.uuid4().hex}"
    name = f"relay-blocked-{uuid.uuid4().hex[:8]}"
    url = rabbit.amqp_url()
    async with (
        collector(url, key) as col,
        running_relay(
            settings,
            url,
            name=name,
            relay_lock_key=unique_lock_key(),
            relay_batch_size=50,
            relay_publish_timeout_seconds=3.0,
        ),
    ):
        before = insert_rows(db, [row_params(key) for _ in range(20)])
        await col.wait_for({str(r.event_id) for r in before}, within=30)

        await alarm(rabbit, "0")
        # RabbitMQ blocks a connection when it next publishes: the first batch after the
        # alarm meets the block (and settles by its publish timeout, untouched).
        during = insert_rows(db, [row_params(key) for _ in range(200)])
        ids = [r.id for r in during]
        await eventually(lambda: metric("qa_relay_broker_blocked") == 1, 30, what="blocked")
        await eventually(lambda: work_session_idle(db, name), 30, what="no open transaction")
        claims = metric("qa_relay_claims_total")
        more = insert_rows(db, [row_params(key) for _ in range(50)])  # NOTIFY wakes it
        ids += [r.id for r in more]
        await two_maintenance_rounds(db, name)
        # Rows piled up: no claim, no attempt charged, no transaction left open.
        state = outbox_state(db, ids)
        assert all(r["attempts"] == 0 for r in state.values())
        assert sum(r["published_at"] is None for r in state.values()) >= 150  # <= 2 batches out
        assert metric("qa_relay_claims_total") == claims
        assert metric("qa_relay_broker_blocked") == 1
        assert work_session_idle(db, name)

        await alarm(rabbit, "0.4")
        await col.wait_for({str(r.event_id) for r in [*during, *more]}, within=60)
        await eventually(
            lambda: all(r["published_at"] for r in outbox_state(db, ids).values()),
            30,
            what="all rows marked",
        )
        await eventually(lambda: metric("qa_relay_broker_blocked") == 0, 30, what="unblocked")
        assert all(r["attempts"] == 0 for r in outbox_state(db, ids).values())
    said = [r.getMessage() for r in caplog.records if r.name == "qa.relay"]
    assert sum("blocks publishers" in m for m in said) == 1, said
    assert sum("unblocked publishers" in m for m in said) == 1, said


async def test_api_answers_succeed_while_the_broker_blocks_and_drain_after(
    settings: Settings, db: Engine, rabbit: PrivateRabbit
) -> None:
    """The API never talks to the broker: real ``POST /questions/{id}/answers`` calls are
    answered 201 while the relay is blocked, their outbox rows pile up, and every one is
    published once the alarm clears."""
    name = f"relay-blocked-{uuid.uuid4().hex[:8]}"
    url = rabbit.amqp_url()
    user = make_user(db)
    async with (
        collector(url, "answer.created") as col,
        running(settings) as client,
        running_relay(
            settings,
            url,
            name=name,
            relay_lock_key=unique_lock_key(),
            relay_batch_size=50,
            relay_publish_timeout_seconds=3.0,
        ),
    ):

        async def answer(question_id: str, i: int) -> str:
            response = await client.post(
                f"/questions/{question_id}/answers",
                json={"body": f"answer {i} during the alarm"},
                headers=user.headers,
            )
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        question = await post_question(client, user)
        before = await answer(question["id"], 0)
        await eventually(lambda: answer_ids(col) >= {before}, 30, what="flowing")

        await alarm(rabbit, "0")
        first = await answer(question["id"], 1)  # the relay's next publish meets the alarm
        await eventually(lambda: metric("qa_relay_broker_blocked") == 1, 30, what="blocked")
        claims = metric("qa_relay_claims_total")
        during = [await answer(question["id"], i) for i in range(2, 62)]
        await two_maintenance_rounds(db, name)
        # Every answer was accepted (201 above) and its event waits in the outbox.
        assert pending_answer_events(db, question["id"]) >= len(during)
        assert metric("qa_relay_claims_total") == claims
        assert metric("qa_relay_broker_blocked") == 1
        assert not answer_ids(col) & set(during)

        await alarm(rabbit, "0.4")
        await eventually(
            lambda: answer_ids(col) >= {first, *during}, 60, what="every answer published"
        )
        await eventually(
            lambda: pending_answer_events(db, question["id"]) == 0, 30, what="all marked"
        )
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM qa.answers WHERE question_id = :q"), {"q": question["id"]}
        ).scalar_one()
    assert stored == 2 + len(during)


def answer_ids(col: Collector) -> set[str]:
    return {json.loads(m.body)["data"]["answer_id"] for m in col.messages}


def pending_answer_events(db: Engine, question_id: str) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM qa.outbox WHERE aggregate_id = :a"
                    " AND event_type = 'answer.created' AND published_at IS NULL"
                ),
                {"a": question_id},
            ).scalar_one()
        )
