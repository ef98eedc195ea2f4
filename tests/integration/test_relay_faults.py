"""The relay when things break: broker connection cut mid-batch, lock connection lost."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text
from yarl import URL

from outbox.settings import Settings
from tests.integration.test_relay_support import (
    collector,
    eventually,
    insert_rows,
    published_ids,
    row_params,
    running_relay,
    unique_lock_key,
)
from tests.support.tcpproxy import TcpProxy


def amqp(settings: Settings) -> str:
    return settings.amqp_url.get_secret_value()


def work_session_idle(db: Engine, name: str) -> bool:
    """The relay's claim connections have no transaction open (their batches settled)."""
    with db.connect() as conn:
        states = (
            conn.execute(
                text("SELECT state FROM pg_stat_activity WHERE application_name = :n"),
                {"n": f"{name}-work"},
            )
            .scalars()
            .all()
        )
    return bool(states) and all(state == "idle" for state in states)


async def test_broker_cut_mid_batch_marks_only_confirmed_rows_and_then_delivers_all(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    name = f"relay-cut-{uuid.uuid4().hex[:8]}"
    upstream = URL(amqp(settings))
    with TcpProxy(upstream.port or 5672) as proxy:
        proxied = str(upstream.with_port(proxy.port))
        async with collector(amqp(settings), key) as col:
            rows = insert_rows(db, [row_params(key) for _ in range(1500)])
            ids = [r.id for r in rows]
            # Slow the broker link so batches are still in flight when it is cut.
            proxy.set_latency(0.02)
            async with running_relay(
                settings, proxied, name=name, relay_lock_key=unique_lock_key(), relay_batch_size=100
            ):
                await eventually(lambda: published_ids(db, ids), what="some rows published")
                proxy.block()
                # Wait until the interrupted batch is settled (committed or rolled back).
                await eventually(lambda: work_session_idle(db, name), what="batch settled")
                marked = published_ids(db, ids)
                assert len(marked) < len(ids), "the cut came too late to test anything"
                by_id = {r.id: str(r.event_id) for r in rows}
                # Every row marked published must really be in the queue.
                await col.wait_for({by_id[i] for i in marked}, within=10)
                proxy.set_latency(0)
                proxy.unblock()
                await col.wait_for(set(by_id.values()), within=30)
                await eventually(
                    lambda: len(published_ids(db, ids)) == len(ids), 30, what="all marked"
                )
    # At least once: duplicates are allowed (lost confirms), gaps are not.
    assert set(col.ids()) >= set(by_id.values())
    # A cut link is the broker's trouble, not the rows': none of them was charged an
    # attempt (which would have put it on per-row backoff of up to minutes).
    with db.connect() as conn:
        charged = conn.execute(
            text("SELECT count(*) FROM qa.outbox WHERE id = ANY(:ids) AND attempts > 0"),
            {"ids": ids},
        ).scalar_one()
    assert charged == 0


async def test_leader_that_loses_its_lock_connection_stops_and_the_standby_takes_over(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    lock_key = unique_lock_key()
    first_name = f"relay-a-{uuid.uuid4().hex[:8]}"
    async with (
        collector(amqp(settings), key) as col,
        running_relay(settings, name=first_name, relay_lock_key=lock_key) as first,
        running_relay(settings, name="relay-b", relay_lock_key=lock_key, leader=False) as second,
    ):
        (row,) = insert_rows(db, [row_params(key)])
        await col.wait_for({str(row.event_id)})
        assert first.is_leader and not second.is_leader
        with db.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :n"
                ),
                {"n": f"{first_name}-lock"},
            ).scalar_one()
        assert killed == 1
        await eventually(lambda: not first.is_leader, 3, what="old leader steps down")
        await eventually(lambda: second.is_leader, 5, what="standby takes over")
        rows = insert_rows(db, [row_params(key) for _ in range(20)])
        await col.wait_for({str(r.event_id) for r in rows})
        await eventually(
            lambda: len(published_ids(db, [r.id for r in rows])) == 20, what="all marked"
        )


async def test_claim_connections_lost_mid_stream_loses_nothing(
    settings: Settings, db: Engine
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    name = f"relay-db-{uuid.uuid4().hex[:8]}"
    async with collector(amqp(settings), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(600)])
        ids = [r.id for r in rows]
        async with running_relay(
            settings, name=name, relay_lock_key=unique_lock_key(), relay_batch_size=20
        ):
            await eventually(lambda: published_ids(db, ids), what="flowing")
            with db.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = :n"
                    ),
                    {"n": f"{name}-work"},
                )
            await col.wait_for({str(r.event_id) for r in rows}, within=30)
            await eventually(lambda: len(published_ids(db, ids)) == len(ids), 30, what="all marked")


async def test_relay_connections_bound_idle_transactions(settings: Settings) -> None:
    import aio_pika

    from relay.relay import Relay

    connection = await aio_pika.connect_robust(amqp(settings))
    try:
        relay = Relay(settings.model_copy(update={"relay_publish_timeout_seconds": 3}), connection)
        conn = await relay.connect("probe", autocommit=True)
        async with conn:
            cur = await conn.execute("SHOW idle_in_transaction_session_timeout")
            assert (await cur.fetchone()) == ("6s",)
            # The server notices a dead relay host (its advisory locks are released).
            cur = await conn.execute(
                "SELECT current_setting('tcp_keepalives_idle'),"
                " current_setting('tcp_keepalives_interval'),"
                " current_setting('tcp_keepalives_count')"
            )
            assert (await cur.fetchone()) == ("5", "2", "3")
    finally:
        await connection.close()
