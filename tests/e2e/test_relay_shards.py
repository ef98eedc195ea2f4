"""Sharded relays (QA_RELAY_SHARDS=8) as real processes: three share the shards, one is
SIGKILLed mid-stream; nothing is lost, each aggregate keeps its order, every shard is led
again by the survivors."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine, text

from outbox.settings import Settings
from outbox.uow import shard_of
from relay.shards import fair_share, shard_lock_key
from tests.e2e.test_relay_processes import Relays, amqp
from tests.integration.test_relay_support import (
    INSERT_SQL,
    Row,
    collector,
    eventually,
    published_ids,
    row_params,
    unique_lock_key,
)

SHARDS = 8


@pytest.fixture
def relays() -> Iterator[Relays]:
    group = Relays(unique_lock_key(), QA_RELAY_SHARDS=str(SHARDS))
    try:
        yield group
    finally:
        group.stop_all()


def insert_sharded(db: Engine, params: list[dict[str, object]]) -> list[Row]:
    """Insert like the API: each row in the shard its aggregate hashes to."""
    rows = []
    with db.begin() as conn:
        for p in params:
            row_id = conn.execute(INSERT_SQL, p).scalar_one()
            conn.execute(
                text("UPDATE qa.outbox SET shard = :s WHERE id = :id"),
                {"s": shard_of(str(p["aggregate_id"]), SHARDS), "id": row_id},
            )
            rows.append(Row(row_id, p["event_id"], p["body"]))  # type: ignore[arg-type]
    return rows


def shard_leaders(db: Engine, base: int) -> dict[int, int]:
    """shard -> OS pid of the relay process leading it."""
    keys = {shard_lock_key(base, k): k for k in range(SHARDS)}
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT (l.classid::bigint << 32) | l.objid::bigint, a.application_name"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.mode = 'ExclusiveLock'"
            )
        ).all()
    # application_name is "qa-relay-<pid>-lock"
    return {keys[k]: int(name.split("-")[2]) for k, name in rows if k in keys}


def balanced(leaders: dict[int, int], processes: int) -> bool:
    per_process = Counter(leaders.values())
    share = fair_share(SHARDS, processes)
    return len(leaders) == SHARDS and all(n <= share for n in per_process.values())


async def test_three_relays_on_eight_shards_one_killed_loses_nothing_and_keeps_order(
    settings: Settings, db: Engine, relays: Relays
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    aggregates = [f"agg-{uuid.uuid4().hex[:6]}-{i}" for i in range(24)]
    assert len({shard_of(a, SHARDS) for a in aggregates}) >= 4  # the stream spans shards
    async with collector(amqp(settings), key) as col:
        procs = [relays.start() for _ in range(3)]
        await eventually(
            lambda: balanced(shard_leaders(db, relays.lock_key), 3), 60, what="8 shards led"
        )
        rows = []
        for step in range(40):
            batch = [
                row_params(key, aggregate_id=agg, body=orjson.dumps({"agg": agg, "seq": step}))
                for agg in aggregates
            ]
            rows += insert_sharded(db, batch)
            if step == 15:
                ids = [r.id for r in rows]
                await eventually(lambda ids=ids: published_ids(db, ids), 30, what="flowing")
                counts = Counter(shard_leaders(db, relays.lock_key).values())
                victim = max(procs, key=lambda p: counts.get(p.pid, 0))
                os.kill(victim.pid, signal.SIGKILL)
                killed_at = time.monotonic()
            await eventually(lambda: True, 0.01)  # yield so the collector keeps consuming
        survivors = {p.pid for p in procs if p is not victim}

        def led_by_survivors() -> bool:
            leaders = shard_leaders(db, relays.lock_key)
            return balanced(leaders, 2) and set(leaders.values()) <= survivors

        await eventually(led_by_survivors, 30, what="every shard led again")
        print(f"all shards led again {time.monotonic() - killed_at:.2f}s after SIGKILL")
        await col.wait_for({str(r.event_id) for r in rows}, within=60)
        await eventually(
            lambda: len(published_ids(db, [r.id for r in rows])) == len(rows), what="all marked"
        )
    seen: dict[str, list[int]] = defaultdict(list)
    first_seen: set[str] = set()
    for message in col.messages:
        if message.message_id in first_seen:
            continue  # a redelivery after the kill (at least once); order counts first copies
        first_seen.add(message.message_id or "")
        payload = orjson.loads(message.body)
        seen[payload["agg"]].append(payload["seq"])
    assert dict(seen) == {agg: list(range(40)) for agg in aggregates}
