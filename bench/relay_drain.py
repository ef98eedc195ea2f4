"""Relay drain: a backlog of real envelopes COPYed into ``qa.outbox``, drained by ``qa-relay``.

Two rates are reported. ``wall``: from spawning the process to the last row marked
(includes interpreter start-up and connecting). ``steady``: rows marked after the first
batch divided by the time between the first and the last mark (``published_at`` is the
marking transaction's ``now()``); the ratio to the publish ceiling uses ``steady``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.ceilings import declare_and_purge
from bench.common import poll_until, queue_depth, require_module
from bench.env import BenchEnv
from bench.envelopes import copy_into_outbox, make_events
from bench.procs import Proc
from bench.stats import rate
from outbox.settings import Settings
from outbox.topology import FEED_QUEUE


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


def run(
    env: BenchEnv, settings: Settings, quick: bool, results: Path, profile: bool
) -> dict[str, Any]:
    require_module("relay.main", "the relay")
    count = 20_000 if quick else 100_000
    env.reset_tables()
    asyncio.run(declare_and_purge(env, settings))
    events = make_events(count)
    copy_into_outbox(env.dsn, events)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE qa.outbox")
    proc = Proc(
        ["qa-relay"],
        env.process_env(),
        results / "relay-drain.log",
        profile_path=results / "profile-relay.raw" if profile else None,
    )
    with proc:
        spawned = time.monotonic()
        finished = poll_until(
            lambda: _pending(env.dsn) == 0,
            timeout=max(120.0, count / 200),
            interval=0.1,
            alive=proc.check_alive,
        )
    first, last, first_batch, batches = _marks(env.dsn)
    delivered = asyncio.run(queue_depth(env.amqp_url, FEED_QUEUE))
    asyncio.run(declare_and_purge(env, settings))
    steady_seconds = last - first
    return {
        "rows": count,
        "batches": batches,
        "relay_batch_size": settings.relay_batch_size,
        "wall_seconds": finished - spawned,
        "wall_rate": rate(count, finished - spawned),
        "steady_seconds": steady_seconds,
        "rate": rate(count - first_batch, steady_seconds),
        "messages_in_queue": delivered,
        "profile": str(results / "profile-relay.raw") if profile else None,
    }
