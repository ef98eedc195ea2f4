"""End-to-end cost per answer: CPU seconds of every process per 1,000 answers, and the
commit-to-feed latency at half of the highest rate this machine sustains.

The part runs the whole system on a **private PostgreSQL cluster and RabbitMQ node**
(``tests/support``), so every CPU second of those servers is the system's own: the shared
services on this machine also serve other people's test suites. PostgreSQL runs with
``fsync`` and ``synchronous_commit`` on, like production. Each process tree is read from
``/proc`` (:mod:`bench.cpu`): ``qa-api``, ``qa-relay``, ``qa-consumer feed``, the
postmaster with all backends and auxiliary processes, the RabbitMQ node (beam.smp).

1. **Idle**: CPU per second with everything running and no load (polling, timers,
   background writers), measured first.
2. **Steady moderate rate** (100 answers/s, 30 s; 10 s quick), open loop
   (:mod:`bench.loadgen`): CPU from the first request until every event reached the feed,
   divided by the answers created -> CPU seconds per 1,000 answers, per process and in
   total, gross and net of the idle rate. A figure per answer does not depend on how many
   cores the machine has.
3. **Highest sustained rate**: steps of 100, 200, 300, ... answers/s until one is not
   sustained (same rule as the ``latency`` part); then a step at **half** of the highest
   sustained rate, whose commit-to-feed p50/p99 is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika

from bench import cpu
from bench.apiproc import ApiProc, create_token
from bench.common import poll_until, require_module
from bench.env import BenchEnv
from bench.latency import measure_step
from bench.procs import Proc
from consumers.feed import SUBSCRIBER as FEED
from outbox.migrate import ensure_database, upgrade
from outbox.settings import Settings
from outbox.topology import declare_subscriber

MODERATE_RATE = 100.0
RAMP_STEP = 100.0
RAMP_LIMIT = 1500.0


@dataclass
class PrivateEnv(BenchEnv):
    """A :class:`BenchEnv` on a private cluster and node (their default vhost)."""

    pg_base: str = ""
    amqp_base: str = ""

    @property
    def database_url(self) -> str:
        return f"{self.pg_base}/{self.database}"

    @property
    def amqp_url(self) -> str:
        return f"{self.amqp_base}/"

    def setup(self) -> None:
        ensure_database(self.database_url)
        upgrade(self.database_url)

    def teardown(self) -> None:
        """Nothing: the private servers are destroyed with their data."""


async def _declare(env: BenchEnv, settings: Settings) -> None:
    connection = await aio_pika.connect_robust(env.amqp_url)
    try:
        channel = await connection.channel()
        await declare_subscriber(
            connection,
            channel,
            FEED.name,
            FEED.bindings,
            settings.retry_delays,
            settings.delivery_limit,
            FEED.retired_bindings,
        )
    finally:
        await connection.close()


def _per_thousand(cpu_s: dict[str, float], answers: int) -> dict[str, float]:
    return {k: round(v / answers * 1000, 3) for k, v in cpu_s.items()} if answers else {}


def _measure(
    env: PrivateEnv,
    settings: Settings,
    roots: dict[str, int],
    apis: list[ApiProc],
    quick: bool,
) -> dict[str, Any]:
    token = create_token(env)
    ids = apis[0].seed_questions(token, 50)
    measure_step(env, apis, token, ids, MODERATE_RATE, 3.0)  # warm-up: pools, caches, plans
    idle_seconds = 5.0
    before = cpu.snapshot(roots)
    time.sleep(idle_seconds)
    idle = {k: v / idle_seconds for k, v in cpu.delta(cpu.snapshot(roots), before).items()}

    seconds = 10.0 if quick else 30.0
    before = cpu.snapshot(roots)
    began = time.monotonic()
    steady = measure_step(env, apis, token, ids, MODERATE_RATE, seconds)
    spent = cpu.delta(cpu.snapshot(roots), before)
    elapsed = time.monotonic() - began
    answers = int(steady["ok"])
    net = {k: max(0.0, v - idle[k] * elapsed) for k, v in spent.items()}
    cost = {
        "rate": MODERATE_RATE,
        "seconds": seconds,
        "answers": answers,
        "elapsed_incl_drain_seconds": round(elapsed, 1),
        "sustained": steady["sustained"],
        "idle_cpu_per_second": {k: round(v, 4) for k, v in idle.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in spent.items()},
        "cpu_s_per_1000_answers": _per_thousand(spent, answers),
        "cpu_s_per_1000_answers_net_of_idle": _per_thousand(net, answers),
        "total_cpu_s_per_1000_answers": round(sum(spent.values()) / answers * 1000, 3)
        if answers
        else None,
        "total_net_cpu_s_per_1000_answers": round(sum(net.values()) / answers * 1000, 3)
        if answers
        else None,
        "commit_to_feed": steady["commit_to_feed"],
    }

    ramp: list[dict[str, Any]] = []
    step_seconds = 5.0 if quick else 8.0
    rate = RAMP_STEP
    while rate <= RAMP_LIMIT:
        result = measure_step(env, apis, token, ids, rate, step_seconds)
        ramp.append(_brief(result))
        if not result["sustained"]:
            break
        rate += RAMP_STEP
    sustained = [s["offered_rate"] for s in ramp if s["sustained"]]
    best = max(sustained) if sustained else None
    half: dict[str, Any] | None = None
    if best is not None:
        half = _brief(measure_step(env, apis, token, ids, best / 2, 10.0 if quick else 20.0))
    return {
        "moderate": cost,
        "ramp": ramp,
        "max_sustained_rate": best,
        "at_half_max": half,
        "p50_ms_at_half_max": half["commit_to_feed"].get("p50_ms") if half else None,
        "p99_ms_at_half_max": half["commit_to_feed"].get("p99_ms") if half else None,
    }


def _brief(step: dict[str, Any]) -> dict[str, Any]:
    keys = ("offered_rate", "achieved_rate", "ok", "failed", "abandoned", "sustained")
    out = {k: step[k] for k in keys}
    out["commit_to_feed"] = step["commit_to_feed"]
    out["http_p99_ms"] = step["http"].get("p99_ms")
    return out


def run(env: BenchEnv, settings: Settings, quick: bool, results: Path) -> dict[str, Any]:
    for module, what in (
        ("api.main", "the API"),
        ("relay.main", "the relay"),
        ("consumers.main", "the feed consumer"),
    ):
        require_module(module, what)
    try:
        from tests.support.private_pg import PrivatePostgres
        from tests.support.private_rabbit import PrivateRabbit
    except ImportError as exc:  # run from the repository root, where tests/ is
        raise RuntimeError("the cost part needs tests/support (run from the repo root)") from exc
    with contextlib.ExitStack() as stack:
        pg = PrivatePostgres()
        stack.callback(pg.destroy)
        pg.init()
        with (pg.data_dir / "postgresql.conf").open("a") as conf:  # production durability
            conf.write("fsync = on\nsynchronous_commit = on\nshared_buffers = 128MB\n")
        pg.start()
        rabbit = PrivateRabbit()
        stack.callback(rabbit.destroy)
        rabbit.start()
        private = PrivateEnv(
            database="qa_cost",
            vhost="/",
            extra_env=env.extra_env,
            pg_base=f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}",
            amqp_base=f"amqp://guest:guest@127.0.0.1:{rabbit.port}",
        )
        private.setup()
        asyncio.run(_declare(private, settings))
        api = ApiProc(private, results / "cost-api.log")
        relay = Proc(["qa-relay"], private.process_env(), results / "cost-relay.log")
        consumer = Proc(
            ["qa-consumer", "feed"], private.process_env(), results / "cost-consumer.log"
        )
        for proc in (consumer, relay, api):
            stack.enter_context(proc)
        api.wait_ready()
        postmaster, beam = pg.postmaster_pid(), rabbit.beam_pid()
        if postmaster is None or beam is None:
            raise RuntimeError("private servers are not running")
        roots = {
            "api": api.pid,
            "relay": relay.pid,
            "consumer": consumer.pid,
            "postgres": postmaster,
            "rabbitmq": beam,
        }
        poll_until(lambda: all(p.alive() for p in (api, relay, consumer)), 5.0)
        return _measure(private, settings, roots, [api], quick)
    raise AssertionError("unreachable")
