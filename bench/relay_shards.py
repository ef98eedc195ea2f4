"""Sharded relay drain: the same backlog drained by 1, 2 and 4 ``qa-relay`` processes
sharing ``QA_RELAY_SHARDS=4``.

The processes are started on an empty outbox and given time to share the shards (every
shard led, each process at its fair share), then the backlog is COPYed in with each
row in its aggregate's shard, and the steady rate is taken from the marks as in
``bench/relay_drain.py``. On a 2-core machine that also runs PostgreSQL and RabbitMQ,
more processes cannot add CPU: this shows what sharding costs or buys per process, not
how it scales on a bigger machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.ceilings import declare_and_purge
from bench.common import poll_until
from bench.env import BenchEnv
from bench.envelopes import copy_into_outbox
from bench.procs import Proc
from bench.stats import rate
from outbox.events import Envelope
from outbox.settings import Settings
from relay.shards import shard_lock_key

SHARDS = 4


def _balanced(dsn: str, base: int, processes: int) -> bool:
    keys = {shard_lock_key(base, k) & 0xFFFF_FFFF_FFFF_FFFF for k in range(SHARDS)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (l.classid::bigint << 32) | l.objid::bigint, a.application_name"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.mode = 'ExclusiveLock'"
        ).fetchall()
    # application_name is "qa-relay-<OS pid>-lock": one process per OS pid.
    led = [str(name).split("-")[2] for key, name in rows if key in keys]
    return len(led) == SHARDS and len(set(led)) == min(processes, SHARDS)


def _drain_once(
    env: BenchEnv, settings: Settings, events: list[Envelope], processes: int, results: Path
) -> dict[str, Any]:
    from bench.relay_drain import _load, _marks, _pending

    _load(env, settings, [])
    penv = env.process_env(QA_RELAY_SHARDS=str(SHARDS))
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                Proc(["qa-relay"], penv, results / f"relay-shards-{processes}-{i}.log")
            )
            for i in range(processes)
        ]

        def alive() -> None:
            for proc in procs:
                proc.check_alive()

        poll_until(lambda: _balanced(env.dsn, settings.relay_lock_key, processes), 60, 0.1, alive)
        copy_into_outbox(env.dsn, events, shards=SHARDS)
        with psycopg.connect(env.dsn, autocommit=True) as conn:
            conn.execute("ANALYZE qa.outbox")
        started = time.monotonic()
        poll_until(lambda: _pending(env.dsn) == 0, max(120.0, len(events) / 200), 0.1, alive)
        wall = time.monotonic() - started
    first, last, first_batch, batches = _marks(env.dsn)
    asyncio.run(declare_and_purge(env, settings))
    return {
        "processes": processes,
        "shards": SHARDS,
        "rows": len(events),
        "batches": batches,
        "steady_seconds": last - first,
        # Overstated by the rows in flight before the first mark (shards x pipeline
        # depth x batch): up to 16k of a 20k quick backlog. ``rate_from_copy`` is not.
        "rate": rate(len(events) - first_batch, last - first),
        "wall_from_copy_seconds": wall,
        "rate_from_copy": rate(len(events), wall),
    }


def run(env: BenchEnv, settings: Settings, events: list[Envelope], results: Path) -> dict[str, Any]:
    return {str(n): _drain_once(env, settings, events, n, results) for n in (1, 2, 4)}
