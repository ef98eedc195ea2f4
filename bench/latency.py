"""Commit-to-feed latency at steady offered rates, with ``qa-api``, ``qa-relay`` and
``qa-consumer feed`` all running.

For every ``answer.created`` posted during a step, latency = ``subscribers.inbox.processed_at``
minus the envelope's ``occurred_at``. ``occurred_at`` is stamped in the request just
before the commit (over-states by the API's commit time, ~1 ms); ``processed_at`` is the
consumer transaction's ``now()``, i.e. its start (under-states by the apply time of the
batch). The first second of each step is a warm-up and is excluded. A rate counts as
sustained when >= 95% of the offered rate was answered 201, nothing failed and every
event reached the feed within the drain timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.apiproc import ApiProc, create_token
from bench.ceilings import declare_and_purge
from bench.common import poll_until, require_module
from bench.env import BenchEnv
from bench.loadgen import offer
from bench.procs import Proc
from bench.stats import percentile, summarize_latencies
from outbox.settings import Settings

WARMUP_SECONDS = 1.0

LATENCY_SQL = """
SELECT extract(epoch FROM i.processed_at
       - (convert_from(o.body, 'UTF8')::jsonb->>'occurred_at')::timestamptz) * 1000
FROM qa.outbox o JOIN subscribers.inbox i ON i.event_id = o.event_id
WHERE o.event_type = 'answer.created'
  AND o.created_at >= to_timestamp(%s) AND o.created_at < to_timestamp(%s)
"""
PENDING_SQL = """
SELECT count(*) FROM qa.outbox o
WHERE o.created_at >= to_timestamp(%s) AND o.created_at < to_timestamp(%s)
  AND NOT EXISTS (SELECT 1 FROM subscribers.inbox i WHERE i.event_id = o.event_id)
"""


def _scalar(dsn: str, sql: str, args: tuple[Any, ...]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
        return int(row[0]) if row else 0


def _latencies(dsn: str, since: float, until: float) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [float(r[0]) for r in conn.execute(LATENCY_SQL, (since, until)).fetchall()]


def measure_step(
    env: BenchEnv, apis: list[ApiProc], token: str, ids: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    began = time.time()
    targets = [("127.0.0.1", api.port) for api in apis]
    load = asyncio.run(offer(targets, token, ids, rate, seconds))
    ended = time.time() + 1.0
    drained = True
    try:
        poll_until(
            lambda: _scalar(env.dsn, PENDING_SQL, (began, ended)) == 0, timeout=30.0, interval=0.2
        )
    except TimeoutError:
        drained = False
    feed = summarize_latencies(_latencies(env.dsn, began + WARMUP_SECONDS, ended))
    achieved = load.ok / max(load.elapsed, seconds)
    step: dict[str, Any] = {
        "offered_rate": rate,
        "achieved_rate": achieved,
        "ok": load.ok,
        "failed": load.failed,
        "failures": load.failures,
        "late_starts": load.late_starts,
        "abandoned": load.abandoned,
        "elapsed_seconds": load.elapsed,
        "all_reached_feed": drained,
        "commit_to_feed": feed,
        "http": summarize_latencies(load.latencies_ms),
    }
    step["sustained"] = (
        achieved >= 0.95 * rate and load.failed == 0 and load.abandoned == 0 and drained
    )
    if load.latencies_ms:
        step["http"]["p99_ms"] = percentile(load.latencies_ms, 99)
    return step


def run(
    env: BenchEnv,
    settings: Settings,
    quick: bool,
    results: Path,
    profile: bool,
    api_procs: int = 2,
) -> dict[str, Any]:
    for module, what in (
        ("api.main", "the API"),
        ("relay.main", "the relay"),
        ("consumers.main", "the feed consumer"),
    ):
        require_module(module, what)
    env.reset_tables()
    asyncio.run(declare_and_purge(env, settings))
    token = create_token(env)
    rates, seconds = ([100.0, 500.0], 5.0) if quick else ([100.0, 250.0, 500.0, 750.0], 10.0)
    apis = [ApiProc(env, results / f"latency-api-{n}.log") for n in range(api_procs)]
    relay = Proc(["qa-relay"], env.process_env(), results / "latency-relay.log")
    consumer = Proc(
        ["qa-consumer", "feed"],
        env.process_env(),
        results / "latency-consumer.log",
        profile_path=results / "profile-latency-consumer.raw" if profile else None,
    )
    steps: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        for proc in (*apis, relay, consumer):
            stack.enter_context(proc)
        for api in apis:
            api.wait_ready()
        ids = apis[0].seed_questions(token, 50)
        for rate in rates:
            for proc in (*apis, relay, consumer):
                proc.check_alive()
            if rate > 500.0 and steps and not steps[-1]["sustained"]:
                break  # already saturated below: a higher offer only adds time
            steps.append(measure_step(env, apis, token, ids, rate, seconds))
    sustained = [s["offered_rate"] for s in steps if s["sustained"]]
    at_500 = next((s for s in steps if s["offered_rate"] == 500.0), None)
    feed_500 = at_500["commit_to_feed"] if at_500 else {}
    return {
        "api_processes": api_procs,
        "seconds_per_step": seconds,
        "steps": steps,
        "max_sustained_rate": max(sustained) if sustained else None,
        "p50_ms_at_500": feed_500.get("p50_ms"),
        "p99_ms_at_500": feed_500.get("p99_ms"),
        "sustained_500": bool(at_500 and at_500["sustained"]),
    }
