"""Relay drain: a backlog of real envelopes COPYed into ``qa.outbox``, drained by ``qa-relay``.

Two rates are reported. ``wall``: from spawning the process to the last row marked
(includes interpreter start-up and connecting). ``steady``: rows marked after the first
batch divided by the time between the first and the last mark (``published_at`` is the
marking transaction's ``now()``); the ratio to the publish ceiling uses ``steady``.

The same backlog is then drained by the simplest peer relay (``bench/peer_relay.py``,
in this process) and its steady rate measured the same way, for ``vs_peer``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu, peer_relay, relay_shards
from bench.ceilings import declare_and_purge
from bench.common import poll_until, queue_depth, require_module
from bench.env import BenchEnv
from bench.envelopes import copy_into_outbox, make_events
from bench.procs import Proc
from bench.stats import rate
from outbox.events import Envelope
from outbox.settings import Settings
from outbox.topology import queue_name

FEED_QUEUE = queue_name("feed")


def _pending(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM qa.outbox WHERE published_at IS NULL").fetchone()
        return int(row[0]) if row else 0


def _marks(dsn: str) -> tuple[float, float, int, int]:
    """(first mark, last mark) as epoch seconds, rows in the first batch, batches."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(published_at))::float8,"
            " extract(epoch FROM max(published_at))::float8,"
            " count(*) FILTER (WHERE published_at = (SELECT min(published_at) FROM qa.outbox)),"
            " count(DISTINCT published_at) FROM qa.outbox"
        ).fetchone()
        assert row is not None
        return float(row[0]), float(row[1]), int(row[2]), int(row[3])


def _load(env: BenchEnv, settings: Settings, events: list[Envelope]) -> None:
    env.reset_tables()
    asyncio.run(declare_and_purge(env, settings))
    copy_into_outbox(env.dsn, events)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE qa.outbox")


def _cpu(env: BenchEnv, relay_pid: int) -> dict[str, float]:
    """CPU seconds so far of the relay process, its PostgreSQL backends (they live as
    long as it does) and the broker."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        backends = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                (f"qa-relay-{relay_pid}-%",),
            )
        ]
    trees = cpu.snapshot({"relay": relay_pid, **{str(p): p for p in backends}})
    return {
        "relay": trees.pop("relay"),
        "postgres_backends": sum(trees.values()),
        "broker": cpu.broker_seconds(),
    }


def peer(env: BenchEnv, settings: Settings, events: list[Envelope]) -> dict[str, Any]:
    """The simple peer relay on the same backlog, batch 2000."""
    _load(env, settings, events)
    started = time.monotonic()
    marked = asyncio.run(peer_relay.drain(env.dsn, env.amqp_url, batch=2000))
    wall = time.monotonic() - started
    first, last, first_batch, batches = _marks(env.dsn)
    delivered = asyncio.run(queue_depth(env.amqp_url, FEED_QUEUE))
    asyncio.run(declare_and_purge(env, settings))
    return {
        "rows": marked,
        "batches": batches,
        "batch_size": 2000,
        "wall_seconds": wall,
        "steady_seconds": last - first,
        "rate": rate(marked - first_batch, last - first),
        "messages_in_queue": delivered,
    }


def run(
    env: BenchEnv, settings: Settings, quick: bool, results: Path, profile: bool
) -> dict[str, Any]:
    require_module("relay.main", "the relay")
    count = 20_000 if quick else 100_000
    events = make_events(count)
    _load(env, settings, events)
    proc = Proc(
        ["qa-relay"],
        env.process_env(),
        results / "relay-drain.log",
        profile_path=results / "profile-relay.raw" if profile else None,
    )
    with proc:
        spawned = time.monotonic()
        # CPU from the first mark to the last (the steady window), not start-up imports.
        at_first_mark: dict[str, float] = {}

        def drained() -> bool:
            pending = _pending(env.dsn)
            if pending < count and not at_first_mark:
                at_first_mark.update(_cpu(env, proc.pid))
            return pending == 0

        finished = poll_until(
            drained, timeout=max(120.0, count / 200), interval=0.05, alive=proc.check_alive
        )
        at_end = _cpu(env, proc.pid)
    first, last, first_batch, batches = _marks(env.dsn)
    delivered = asyncio.run(queue_depth(env.amqp_url, FEED_QUEUE))
    asyncio.run(declare_and_purge(env, settings))
    steady_seconds = last - first
    steady = rate(count - first_batch, steady_seconds)
    simple = peer(env, settings, events)
    sharded = relay_shards.run(env, settings, events, results)
    return {
        "rows": count,
        "batches": batches,
        "relay_batch_size": settings.relay_batch_size,
        "wall_seconds": finished - spawned,
        "wall_rate": rate(count, finished - spawned),
        "steady_seconds": steady_seconds,
        "rate": steady,
        "messages_in_queue": delivered,
        # CPU per row, from about the first mark to the last (rows after the first batch).
        "cpu_us_per_row": {
            name: 1e6 * (at_end[name] - at_first_mark.get(name, 0.0)) / (count - first_batch)
            for name in at_end
        },
        "profile": str(results / "profile-relay.raw") if profile else None,
        "peer": simple,
        "vs_peer": steady / simple["rate"] if simple["rate"] else None,
        "sharded": sharded,
    }
