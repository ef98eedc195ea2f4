"""CPU per answer of one ``qa-api`` process and of its PostgreSQL backends, under an
open-loop rate: a figure that barely depends on how loaded the machine is.

    .venv/bin/python -m bench.api_cpu [--rate 100] [--seconds 20] [--rounds 3] [--profile]

A private database on the local PostgreSQL (dropped afterwards), the real ``qa-api`` as a
subprocess, 50 questions; then ``rounds`` x ``seconds`` of ``POST /questions/{id}/answers``
at ``rate``/s (:mod:`bench.loadgen`, in this process, not counted). Per round: CPU seconds
of the API process tree and of the database backends serving it (``pg_stat_activity``
pids of the private database, read from ``/proc``) divided by the answers created, in
microseconds. The median round is the figure. ``--profile`` runs py-spy on the API and
prints the functions that dominate (:mod:`bench.profiling`).
"""

from __future__ import annotations

import argparse
import asyncio
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


def _backend_cpu(dsn: str, database: str) -> float:
    """CPU seconds so far of the backends connected to ``database`` (other than ours)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        ]
    return sum(cpu.snapshot({str(p): p for p in pids}).values())


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
        (after_pg - before_pg) / load.ok * 1e6,
        load.ok,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    env = BenchEnv(database=f"qa_bench_apicpu_{uuid.uuid4().hex[:8]}")
    ensure_database(env.database_url)
    upgrade(env.database_url)
    profile = RESULTS / "profile-api-cpu.raw" if args.profile else None
    if profile is not None and profile.exists():
        profile.unlink()
    try:
        api = ApiProc(env, RESULTS / "api-cpu.log", profile)
        with api:
            api.wait_ready()
            token = create_token(env)
            ids = api.seed_questions(token, 50)
            asyncio.run(offer([("127.0.0.1", api.port)], token, ids, args.rate, 3.0))  # warm-up
            rows = []
            for n in range(args.rounds):
                api_us, pg_us, ok = _round(env, api, token, ids, args.rate, args.seconds)
                rows.append((api_us, pg_us))
                load = os.getloadavg()[0]
                print(
                    f"round {n + 1}: {ok} answers, API {api_us:6.0f} us/answer,"
                    f" PostgreSQL backends {pg_us:6.0f} us/answer (load {load:.2f})"
                )
            print(
                f"median: API {statistics.median(r[0] for r in rows):.0f} us/answer,"
                f" PostgreSQL backends {statistics.median(r[1] for r in rows):.0f} us/answer"
            )
    finally:
        admin = libpq_dsn(f"{PG_ADMIN_URL}/postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{env.database}" WITH (FORCE)')
    if profile is not None:
        summary = summarize(Path(profile), top=25)
        for kind in ("self", "project"):
            print(f"-- {kind}")
            for name, share in summary.get(kind, []):
                print(f"{share:5.1f} %  {name}")


if __name__ == "__main__":
    main()
