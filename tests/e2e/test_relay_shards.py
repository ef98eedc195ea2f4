"""Sharded relays (QA_RELAY_SHARDS=8) as real processes: three share the shards, one is
SIGKILLed mid-stream; nothing is lost, each aggregate keeps its order, every shard is led
again by the survivors. The test reports how long the takeover took (never asserted:
timings on a shared machine are reported, not tested; run with ``-s`` to see the line)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

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


def aggregates_covering_every_shard(per_shard: int) -> list[str]:
    """Aggregate ids, ``per_shard`` of them hashing to each shard (so whichever shards the
    killed relay led, rows keep arriving in them after the kill)."""
    by_shard: dict[int, list[str]] = defaultdict(list)
    while min((len(by_shard[k]) for k in range(SHARDS)), default=0) < per_shard:
        agg = f"agg-{uuid.uuid4().hex[:8]}"
        if len(by_shard[shard_of(agg, SHARDS)]) < per_shard:
            by_shard[shard_of(agg, SHARDS)].append(agg)
    return [agg for k in range(SHARDS) for agg in by_shard[k]]


def wait_for_locks(
    db: Engine, base: int, shards: set[int], owners: set[int], since: float, within: float
) -> float:
    """Seconds from ``since`` until every one of ``shards`` is led by one of ``owners``.

    Runs in a thread, polling every 20 ms, so the insert loop on the event loop does not
    delay it; ``within`` only keeps a broken takeover from hanging the test."""
    while True:
        leaders = shard_leaders(db, base)
        now = time.monotonic()
        if all(leaders.get(k) in owners for k in shards):
            return now - since
        if now - since > within:
            raise AssertionError(f"shards {sorted(shards)} not led again within {within}s")
        time.sleep(0.02)


def first_claims_after(db: Engine, shards: set[int], since: datetime) -> dict[int, float]:
    """Per shard: seconds from ``since`` (database clock) to the first claim of one of its
    rows by a new leader (``published_at`` is the claim transaction's start)."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT shard, extract(epoch FROM min(published_at) - :since)::float8"
                " FROM qa.outbox WHERE shard = ANY(:shards) AND published_at > :since"
                " GROUP BY shard"
            ),
            {"since": since, "shards": sorted(shards)},
        ).all()
    return {shard: seconds for shard, seconds in rows}


async def test_three_relays_on_eight_shards_one_killed_loses_nothing_and_keeps_order(
    settings: Settings, db: Engine, relays: Relays, record_property: Any
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    aggregates = aggregates_covering_every_shard(3)
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
                leaders = shard_leaders(db, relays.lock_key)
                counts = Counter(leaders.values())
                victim = max(procs, key=lambda p: counts.get(p.pid, 0))
                orphans = {k for k, pid in leaders.items() if pid == victim.pid}
                survivors = {p.pid for p in procs if p is not victim}
                with db.connect() as conn:
                    killed_db = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
                killed_at = time.monotonic()
                os.kill(victim.pid, signal.SIGKILL)
                # run_in_executor starts the thread now (to_thread would wait for a yield)
                locks = asyncio.get_running_loop().run_in_executor(
                    None, wait_for_locks, db, relays.lock_key, orphans, survivors, killed_at, 30
                )
            await asyncio.sleep(0.01)  # yield so the collector keeps consuming
        locked_after = await locks

        def led_by_survivors() -> bool:
            leaders = shard_leaders(db, relays.lock_key)
            return balanced(leaders, 2) and set(leaders.values()) <= survivors

        await eventually(led_by_survivors, 30, what="every shard led again")
        await col.wait_for({str(r.event_id) for r in rows}, within=60)
        await eventually(
            lambda: len(published_ids(db, [r.id for r in rows])) == len(rows), what="all marked"
        )
    claims = first_claims_after(db, orphans, killed_db)
    assert set(claims) == orphans  # every orphaned shard published again
    record_property("takeover_locks_seconds", round(locked_after, 3))
    record_property("takeover_first_claim_seconds", round(max(claims.values()), 3))
    print(
        f"takeover of {len(orphans)} shards after SIGKILL: locks held by the survivors"
        f" {locked_after:.2f}s, first claim in every orphaned shard"
        f" {max(claims.values()):.2f}s (per shard: "
        + ", ".join(f"{k}: {s:.2f}s" for k, s in sorted(claims.items()))
        + ")"
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
