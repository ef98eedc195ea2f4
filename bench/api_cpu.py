"""CPU per answer of one ``qa-api`` process and of its PostgreSQL backends, under an
open-loop rate: a figure that barely depends on how loaded the machine is.

    .venv/bin/python -m bench.api_cpu [--rate 100] [--seconds 20] [--rounds 3] [--profile]
    git archive --prefix=base/ BASE | tar -x -C /tmp
    .venv/bin/python -m bench.api_cpu --compare /tmp/base

A private database on the local PostgreSQL (dropped afterwards), the real ``qa-api`` as a
subprocess, 50 questions; then ``rounds`` x ``seconds`` of ``POST /questions/{id}/answers``
at ``rate``/s (:mod:`bench.loadgen`, in this process, not counted). Per round: CPU seconds
of the API process tree and of the database backends serving it (``pg_stat_activity``
pids of the private database, read from ``/proc``) divided by the answers created, in
microseconds. The median round is the figure. ``--profile`` runs py-spy on the API and
prints the functions that dominate (:mod:`bench.profiling`). ``--compare DIR`` runs a
second API from another source tree beside it, rounds alternating (and which goes first
alternating too), so a before/after is taken under the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import uuid
from pathlib import Path

import psycopg

from bench import cpu
from bench.apiproc import ApiProc, create_token
from bench.common import RESULTS
from bench.env import PG_ADMIN_URL, BenchEnv
from bench.loadgen import offer
from bench.profiling import summarize
from outbox.db import libpq_dsn
from outbox.migrate import ensure_database, upgrade


def _backend_cpu(dsn: str, database: str) -> dict[int, float]:
    """CPU seconds so far of each backend connected to ``database`` (other than ours)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        ]
    return {int(k): v for k, v in cpu.snapshot({str(p): p for p in pids}).items()}


def _backend_delta(after: dict[int, float], before: dict[int, float]) -> float:
    """CPU spent between two snapshots by backends alive at the second (a backend that
    exited in between is not counted: the API's pool keeps its connections)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def _round(
    env: BenchEnv, api: ApiProc, token: str, ids: list[str], rate: float, seconds: float
) -> tuple[float, float, int]:
    before_api = cpu.snapshot({"api": api.pid})["api"]
    before_pg = _backend_cpu(env.dsn, env.database)
    load = asyncio.run(offer([("127.0.0.1", api.port)], token, ids, rate, seconds))
    after_api = cpu.snapshot({"api": api.pid})["api"]
    after_pg = _backend_cpu(env.dsn, env.database)
    if load.ok == 0 or load.failed or load.abandoned:
        raise RuntimeError(f"round failed: {load.failures} abandoned={load.abandoned}")
    return (
        (after_api - before_api) / load.ok * 1e6,
        _backend_delta(after_pg, before_pg) / load.ok * 1e6,
        load.ok,
    )


def _drop(env: BenchEnv) -> None:
    admin = libpq_dsn(f"{PG_ADMIN_URL}/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{env.database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also run the API from the source tree DIR (e.g. a `git archive` of the base"
        " commit, put first on PYTHONPATH) with its own database; rounds alternate",
    )
    args = parser.parse_args()
    variants: dict[str, dict[str, str]] = {"this tree": {}}
    if args.compare:
        variants[args.compare] = {"PYTHONPATH": str(Path(args.compare).resolve())}
    envs = {name: BenchEnv(database=f"qa_bench_apicpu_{uuid.uuid4().hex[:8]}") for name in variants}
    profile = RESULTS / "profile-api-cpu.raw" if args.profile else None
    if profile is not None and profile.exists():
        profile.unlink()
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    try:
        with contextlib.ExitStack() as stack:
            apis, tokens, ids = {}, {}, {}
            for n, (name, overrides) in enumerate(variants.items()):
                env = envs[name]
                ensure_database(env.database_url)
                upgrade(env.database_url)
                log = RESULTS / f"api-cpu-{n}.log"
                api = ApiProc(env, log, profile if n == 0 else None, **overrides)
                apis[name] = stack.enter_context(api)
            for name, api in apis.items():
                api.wait_ready()
                tokens[name] = create_token(envs[name])
                ids[name] = api.seed_questions(tokens[name], 50)
                target = [("127.0.0.1", api.port)]
                asyncio.run(offer(target, tokens[name], ids[name], args.rate, 3.0))  # warm-up
            for n in range(args.rounds):
                # Every other round the other variant goes first: CPU per answer drifts
                # while a process warms up and with the machine's load, and a fixed order
                # would hand that drift to one side.
                order = list(apis.items())
                for name, api in order if n % 2 == 0 else reversed(order):
                    api_us, pg_us, ok = _round(
                        envs[name], api, tokens[name], ids[name], args.rate, args.seconds
                    )
                    rows[name].append((api_us, pg_us))
                    print(
                        f"round {n + 1} [{name}]: {ok} answers, API {api_us:6.0f} us/answer,"
                        f" PostgreSQL backends {pg_us:6.0f} us/answer"
                        f" (load {os.getloadavg()[0]:.2f})"
                    )
        for name, measured in rows.items():
            print(
                f"median [{name}]: API {statistics.median(r[0] for r in measured):.0f} us/answer,"
                f" PostgreSQL backends {statistics.median(r[1] for r in measured):.0f} us/answer"
            )
    finally:
        for env in envs.values():
            _drop(env)
    if profile is not None:
        summary = summarize(Path(profile), top=25)
        for kind in ("self", "project"):
            print(f"-- {kind}")
            for name, share in summary.get(kind, []):
                print(f"{share:5.1f} %  {name}")


if __name__ == "__main__":
    main()
