"""The relay against real PostgreSQL and RabbitMQ: what it publishes, when, and how."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, text

from outbox.db import libpq_dsn
from outbox.settings import Settings
from relay import store
from tests.integration.test_relay_support import (
    collector,
    eventually,
    insert_rows,
    outbox_state,
    published_ids,
    row_params,
    running_relay,
    unique_lock_key,
)


def amqp(settings: Settings) -> str:
    return settings.amqp_url.get_secret_value()


async def test_committed_row_is_published_byte_for_byte_with_its_properties(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    # Not canonical JSON on purpose: the relay must not re-serialize the body.
    body = b'{"b": 1,   "a": "\\u00e9\xc3\xa9", "z": [ ]}'
    headers = {"x-attempts": 2, "x-bin": {"$bytes": base64.b64encode(b"\x00\x01").decode()}}
    async with collector(amqp(settings), key) as col:
        (row,) = insert_rows(db, [row_params(key, body=body, headers=headers, event_type="t.x")])
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await col.wait_for({str(row.event_id)})
            await eventually(lambda: published_ids(db, [row.id]), what="published_at")
    (message,) = col.messages
    assert message.body == body
    assert message.message_id == str(row.event_id)
    assert message.type == "t.x"
    assert message.content_type == "application/json"
    assert (message.content_encoding, message.app_id) == ("utf-8", "qa-outbox")
    assert message.delivery_mode == 2
    assert message.headers == {"x-attempts": 2, "x-bin": b"\x00\x01"}
    with db.connect() as conn:
        created_at = conn.execute(
            text("SELECT created_at FROM qa.outbox WHERE id = :id"), {"id": row.id}
        ).scalar_one()
    assert message.timestamp is not None
    # AMQP timestamps carry whole seconds.
    assert abs(message.timestamp - created_at) < timedelta(seconds=1)
    state = outbox_state(db, [row.id])[row.id]
    assert state["attempts"] == 0 and state["last_error"] is None


async def test_nacked_row_is_not_marked_published(settings: Settings, db: Engine) -> None:
    """A queue that rejects every publish makes the broker nack: the row stays pending."""
    key = f"test.{uuid.uuid4().hex}"
    full = {"x-max-length": 0, "x-overflow": "reject-publish"}
    async with collector(amqp(settings), key, arguments=full):
        (row,) = insert_rows(db, [row_params(key)])
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            state = await eventually(
                lambda: (
                    outbox_state(db, [row.id])[row.id]["attempts"] >= 1
                    and outbox_state(db, [row.id])[row.id]
                ),
                what="a failed attempt",
            )
    assert state["published_at"] is None
    assert state["last_error"].startswith("nack")


async def test_row_of_a_slow_transaction_started_earlier_is_still_published(
    settings: Settings, db: Engine
) -> None:
    """No ``id > last_id`` high-water mark: a lower id committed later is not skipped."""
    key = f"test.{uuid.uuid4().hex}"
    async with (
        collector(amqp(settings), key) as col,
        running_relay(settings, relay_lock_key=unique_lock_key()),
    ):
        slow = db.connect()
        try:
            slow_tx = slow.begin()
            a = slow.execute(
                text(
                    "INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id,"
                    " routing_key, body) VALUES (:e, 't', 'test', 'a', :k, :b) RETURNING id"
                ),
                {"e": uuid.uuid4(), "k": key, "b": b"{}"},
            ).scalar_one()
            (b,) = insert_rows(db, [row_params(key)])
            assert a < b.id
            await col.wait_for({str(b.event_id)})
            await eventually(lambda: published_ids(db, [b.id]), what="B published")
            slow_tx.commit()
        finally:
            slow.close()
        await eventually(lambda: published_ids(db, [a]), what="A published")
    assert len(col.messages) == 2


async def test_unroutable_row_backs_off_and_does_not_block_the_rows_behind_it(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    nowhere = f"test.unbound.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        (poison,) = insert_rows(db, [row_params(nowhere)])
        good = insert_rows(db, [row_params(key) for _ in range(5)])
        async with running_relay(
            settings, relay_lock_key=unique_lock_key(), relay_poll_interval_seconds=0.1
        ):
            await col.wait_for({str(r.event_id) for r in good})
            first = await eventually(
                lambda: (s := outbox_state(db, [poison.id])[poison.id])["attempts"] >= 1 and s,
                what="first failed attempt",
            )
            second = await eventually(
                lambda: (s := outbox_state(db, [poison.id])[poison.id])["attempts"] >= 2 and s,
                what="second failed attempt",
            )
        assert published_ids(db, [r.id for r in good]) == {r.id for r in good}
    assert second["published_at"] is None
    assert "unroutable" in second["last_error"]
    # The next attempt is scheduled further out each time (claim time >= previous
    # next_attempt_at, backoff doubles from 1 s), so the gap is at least 2 s.
    assert second["next_attempt_at"] - first["next_attempt_at"] >= timedelta(seconds=2)


async def test_missing_exchange_fails_only_its_row(settings: Settings, db: Engine) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        (bad,) = insert_rows(db, [row_params(key, exchange=f"no.such.{uuid.uuid4().hex}")])
        good = insert_rows(db, [row_params(key) for _ in range(3)])
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await col.wait_for({str(r.event_id) for r in good})
            state = await eventually(
                lambda: (s := outbox_state(db, [bad.id])[bad.id])["attempts"] >= 1 and s,
                what="failed attempt",
            )
    assert state["published_at"] is None
    assert "does not exist" in state["last_error"]


async def test_default_exchange_row_reaches_only_the_named_queue(
    settings: Settings, db: Engine
) -> None:
    """Dead-letter replays write exchange '' and the queue name as routing key."""
    key = f"test.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        (row,) = insert_rows(db, [row_params(key, exchange="")])
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await col.wait_for({str(row.event_id)})
            await eventually(lambda: published_ids(db, [row.id]), what="published")


async def test_listen_wakes_the_relay_long_before_the_poll_interval(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with (
        collector(amqp(settings), key) as col,
        running_relay(settings, relay_lock_key=unique_lock_key(), relay_poll_interval_seconds=30),
    ):
        # Once a first row is through, the relay sleeps on a 30 s poll: only the
        # notification sent at commit can wake it in time for the second row.
        (first,) = insert_rows(db, [row_params(key)])
        await col.wait_for({str(first.event_id)}, within=5)
        (row,) = insert_rows(db, [row_params(key)])
        await col.wait_for({str(row.event_id)}, within=5)


async def test_retention_deletes_only_published_rows_past_retention(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    old_pub, old_pending, new_pub = insert_rows(db, [row_params(key) for _ in range(3)])
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE qa.outbox SET published_at = now() - interval '2 hours',"
                " created_at = now() - interval '2 hours' WHERE id = :id"
            ),
            {"id": old_pub.id},
        )
        conn.execute(
            text("UPDATE qa.outbox SET created_at = now() - interval '2 hours' WHERE id = :id"),
            {"id": old_pending.id},
        )
        conn.execute(
            text(
                "UPDATE qa.outbox SET published_at = now() - interval '10 minutes' WHERE id = :id"
            ),
            {"id": new_pub.id},
        )
    async with await psycopg.AsyncConnection.connect(
        libpq_dsn(settings.database_url), autocommit=True
    ) as conn:
        deleted = await store.purge_published(conn, retention_seconds=3600, batch=1)
    assert deleted >= 1
    remaining = outbox_state(db, [old_pub.id, old_pending.id, new_pub.id])
    assert set(remaining) == {old_pending.id, new_pub.id}


@pytest.mark.parametrize(("batch", "depth"), [(1, 1), (7, 2), (7, 4)])
async def test_many_rows_are_all_published_in_id_order(
    settings: Settings, db: Engine, batch: int, depth: int
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(50)])
        async with running_relay(
            settings,
            relay_lock_key=unique_lock_key(),
            relay_batch_size=batch,
            relay_pipeline_depth=depth,
        ):
            await col.wait_for({str(r.event_id) for r in rows})
            await eventually(
                lambda: len(published_ids(db, [r.id for r in rows])) == len(rows),
                what="all marked",
            )
    assert col.ids() == [str(r.event_id) for r in rows]


async def test_returns_among_several_batches_in_flight_fail_only_their_rows(
    settings: Settings, db: Engine
) -> None:
    """Unroutable rows spread over batches that are in flight together: each returned
    row fails alone, every other row is confirmed, marked and delivered in id order
    (the ordered walk of multiple acks meets aiormq's return placeholders)."""
    key = f"test.{uuid.uuid4().hex}"
    nowhere = f"test.unbound.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        rows = insert_rows(db, [row_params(nowhere if i % 7 == 3 else key) for i in range(80)])
        routed = [r for i, r in enumerate(rows) if i % 7 != 3]
        returned = [r for i, r in enumerate(rows) if i % 7 == 3]
        async with running_relay(
            settings,
            relay_lock_key=unique_lock_key(),
            relay_batch_size=9,
            relay_pipeline_depth=4,
            relay_poll_interval_seconds=0.2,
        ):
            await col.wait_for({str(r.event_id) for r in routed})
            await eventually(
                lambda: len(published_ids(db, [r.id for r in routed])) == len(routed),
                what="routed rows marked",
            )
            await eventually(
                lambda: all(
                    state["attempts"] >= 1
                    for state in outbox_state(db, [r.id for r in returned]).values()
                ),
                what="returned rows failed",
            )
        assert published_ids(db, [r.id for r in returned]) == set()
    assert col.ids() == [str(r.event_id) for r in routed]


async def test_rows_sharing_an_event_id_never_swap_outcomes(settings: Settings, db: Engine) -> None:
    """Returns are matched by message id: a returned twin must not count as published."""
    key = f"test.{uuid.uuid4().hex}"
    nowhere = f"test.unbound.{uuid.uuid4().hex}"
    async with collector(amqp(settings), key) as col:
        for _ in range(2):
            lost = row_params(nowhere)
            twin = {**row_params(key), "event_id": lost["event_id"]}
            returned, routed = insert_rows(db, [lost, twin])
            async with running_relay(
                settings, relay_lock_key=unique_lock_key(), relay_poll_interval_seconds=0.2
            ):
                await col.wait_for({str(routed.event_id)})
                await eventually(lambda r=routed: published_ids(db, [r.id]), what="twin marked")
                await eventually(
                    lambda r=returned: outbox_state(db, [r.id])[r.id]["attempts"] >= 1,
                    what="returned row failed",
                )
            assert published_ids(db, [returned.id]) == set()


async def test_hostile_rows_fail_alone_and_good_rows_behind_them_are_published(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    hostile = insert_rows(
        db,
        [
            row_params(key, headers=["not", "a", "table"]),  # type: ignore[arg-type]
            {**row_params(key), "headers": f'{{"too-big": {2**70}}}'},
            row_params("é" * 200),  # 400 bytes: longer than an AMQP routing key may be
        ],
    )
    good = insert_rows(db, [row_params(key) for _ in range(3)])
    async with collector(amqp(settings), key) as col:
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await col.wait_for({str(r.event_id) for r in good})
            states = await eventually(
                lambda: (
                    all(
                        s["attempts"] >= 1
                        for s in outbox_state(db, [r.id for r in hostile]).values()
                    )
                    and outbox_state(db, [r.id for r in hostile])
                ),
                what="each hostile row failed",
            )
    assert all(s["published_at"] is None and s["last_error"] for s in states.values())
    assert set(col.ids()) == {str(r.event_id) for r in good}
