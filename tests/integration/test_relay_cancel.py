"""A relay cancelled at any moment stops, and loses nothing.

CI once hung on a relay that kept running after its task was cancelled (the cause was
never proven; ``asyncio.wait_for`` in 3.11 can swallow a cancellation, and the looping
waits use ``asyncio.timeout`` since). This test cancels in-process relays at random
points of their life while they drain a backlog (electing, claiming, publishing,
waiting for confirms, marking, idling), many times over: every cancellation must end
the task (a generous bound only turns a hang into a failure), and the rows must all be
published exactly once in id order by the relays that follow.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import aio_pika
from sqlalchemy import Engine

from outbox.settings import Settings
from relay.relay import Relay
from tests.integration.test_relay_support import (
    collector,
    eventually,
    insert_rows,
    published_ids,
    row_params,
    unique_lock_key,
)
from tests.support.stuck import pending_tasks

ROUNDS = 25
PER_ROUND = 80  # fresh rows before each round, so every relay has work when cancelled
ROWS = ROUNDS * PER_ROUND
STOP_BOUND_SECONDS = 30  # a hang detector, not a timing assertion


async def test_cancelled_at_random_points_stops_and_loses_nothing(
    settings: Settings, db: Engine
) -> None:
    rng = random.Random(uuid.uuid4().int)
    seed_note = f"(rng state {rng.getstate()[1][0]})"
    key = f"test.{uuid.uuid4().hex}"
    url = settings.amqp_url.get_secret_value()
    relay_settings = settings.model_copy(
        update={
            "relay_metrics_port": 0,
            "relay_lock_key": unique_lock_key(),
            "relay_batch_size": 50,
        }
    )
    async with collector(url, key) as col:
        rows = []
        for round_ in range(ROUNDS):
            rows += insert_rows(db, [row_params(key) for _ in range(PER_ROUND)])
            connection = await aio_pika.connect_robust(url, reconnect_interval=0.5)
            try:
                relay = Relay(relay_settings, connection, name=f"cancel-{round_}")
                task = asyncio.create_task(relay.run())
                # Early rounds cancel during start-up and election, later ones mid-drain.
                await asyncio.sleep(rng.uniform(0, 0.05 if round_ % 3 == 0 else 0.6))
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
                assert task in done, (
                    f"round {round_}: the relay ignored its cancellation; tasks:\n"
                    + pending_tasks()
                )
                assert task.cancelled() or task.exception() is None, task.exception()
            finally:
                await connection.close()
        ids = [r.id for r in rows]
        # Whatever the cancellations left behind, one more relay publishes it.
        connection = await aio_pika.connect_robust(url, reconnect_interval=0.5)
        task = asyncio.create_task(Relay(relay_settings, connection, name="cancel-final").run())
        try:
            await eventually(
                lambda: len(published_ids(db, ids)) == ROWS, 60, what=f"all published {seed_note}"
            )
            await col.wait_for({str(r.event_id) for r in rows}, within=60)
        finally:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
            await connection.close()
            assert task in done
    got = col.ids()
    expected = [str(r.event_id) for r in rows]
    # At-least-once: a cancellation between a confirm and the mark republishes a row;
    # every row arrives, and the first arrivals keep id order.
    assert set(got) == set(expected)
    first_seen = list(dict.fromkeys(got))
    assert first_seen == expected
