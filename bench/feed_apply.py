"""Feed apply: real envelopes pre-published to ``qa.events`` (queue declared with
``declare_subscriber``), then ``qa-consumer feed`` started and timed until the inbox has them all.

``wall``: from spawning the process to the last inbox row seen (includes start-up).
``steady``: rows after the first batch over the span of ``subscribers.inbox.processed_at``
(the applying transaction's ``now()``); the ratio to the consume ceiling uses ``steady``.
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
from bench.envelopes import make_events, publish_events
from bench.procs import Proc
from bench.stats import rate
from outbox.settings import Settings
from outbox.topology import queue_name

FEED_QUEUE = queue_name("feed")


def _applied(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM subscribers.inbox").fetchone()
        return int(row[0]) if row else 0


def _span(dsn: str) -> tuple[float, int, int, int]:
    """(seconds between first and last apply, rows in first batch, batches, feed rows)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(processed_at) - min(processed_at))::float8,"
            " count(*) FILTER (WHERE processed_at ="
            " (SELECT min(processed_at) FROM subscribers.inbox)),"
            " count(DISTINCT processed_at), (SELECT count(*) FROM feed.questions)"
            " FROM subscribers.inbox"
        ).fetchone()
        assert row is not None
        return float(row[0] or 0.0), int(row[1]), int(row[2]), int(row[3])


def run(
    env: BenchEnv, settings: Settings, quick: bool, results: Path, profile: bool
) -> dict[str, Any]:
    require_module("consumers.main", "the feed consumer")
    count = 20_000 if quick else 100_000
    env.reset_tables()
    asyncio.run(declare_and_purge(env, settings))
    events = make_events(count)
    asyncio.run(publish_events(env.amqp_url, events))
    queued = asyncio.run(queue_depth(env.amqp_url, FEED_QUEUE))
    proc = Proc(
        ["qa-consumer", "feed"],
        env.process_env(),
        results / "feed-apply.log",
        profile_path=results / "profile-consumer.raw" if profile else None,
    )
    with proc:
        spawned = time.monotonic()
        finished = poll_until(
            lambda: _applied(env.dsn) >= count,
            timeout=max(120.0, count / 200),
            interval=0.1,
            alive=proc.check_alive,
        )
    span, first_batch, batches, feed_rows = _span(env.dsn)
    left = asyncio.run(queue_depth(env.amqp_url, FEED_QUEUE))
    asyncio.run(declare_and_purge(env, settings))
    return {
        "events": count,
        "queued_before": queued,
        "batches": batches,
        "consumer_prefetch": settings.consumer_prefetch,
        "consumer_batch_size": settings.consumer_batch_size,
        "wall_seconds": finished - spawned,
        "wall_rate": rate(count, finished - spawned),
        "steady_seconds": span,
        "rate": rate(count - first_batch, span),
        "feed_questions": feed_rows,
        "left_in_queue": left,
        "profile": str(results / "profile-consumer.raw") if profile else None,
    }
