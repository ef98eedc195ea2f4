"""What one answer costs each part of the system, end to end: CPU seconds and WAL bytes.

    .venv/bin/python -m bench.event_cost [SECONDS]

Runs ``qa-api``, ``qa-relay`` and ``qa-consumer feed`` on a private database and vhost,
posts answers with ``wrk`` for SECONDS (default 10), waits until every event is in the
feed, and divides by the number of answers written in that window:

* CPU per event of each process (``/proc/<pid>/stat`` user+system time) and of the
  PostgreSQL backends serving this database (its pids in ``pg_stat_activity``; the
  server's background writers are not included);
* WAL bytes per event written for this database (``pg_walinspect`` over the run's LSN
  range, records whose block references name this database's oid; commit records carry
  no block reference and are counted apart), full-page images shown separately.

Then ``GET /feed`` under ``wrk`` (first pages of every filter and a few deeper pages with
real cursors), once through the API as configured (1 s page cache) and once with the
cache off (``QA_API_FEED_CACHE_SECONDS=0``): CPU per read of the API and of PostgreSQL.

Inverting CPU per event gives events per second per core for each component: the
figures ``docs/SCALING.md`` builds on. Needs superuser on the local PostgreSQL (it
creates the ``pg_walinspect`` extension in the private database) and ``wrk``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.api_write import LUA, wrk
from bench.apiproc import ApiProc, create_token, http_json
from bench.env import BenchEnv
from bench.procs import Proc

TICKS = os.sysconf("SC_CLK_TCK")
RESULTS = Path(__file__).parent / "results"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def backend_cpu(conn: psycopg.Connection[Any], db: str) -> dict[int, float]:
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,)
    ).fetchall()
    out = {}
    for (pid,) in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return out


def transactions(conn: psycopg.Connection[Any], db: str) -> int:
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (db,)
    ).fetchone()
    return int(row[0]) if row else 0


def wal_for_db(conn: psycopg.Connection[Any], start: str, end: str, oid: int) -> dict[str, int]:
    row = conn.execute(
        """
        SELECT coalesce(sum(record_length) FILTER (WHERE block_ref LIKE %(pat)s), 0),
               coalesce(sum(fpi_length) FILTER (WHERE block_ref LIKE %(pat)s), 0),
               count(*) FILTER (WHERE resource_manager = 'Transaction'),
               coalesce(sum(record_length), 0)
        FROM pg_get_wal_records_info(%(start)s, %(end)s)
        """,
        {"pat": f"%/{oid}/%", "start": start, "end": end},
    ).fetchone()
    assert row is not None
    return {"db_bytes": row[0], "db_fpi_bytes": row[1], "xact_records": row[2], "all_bytes": row[3]}


READ_LUA = """
local paths = {%(paths)s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


def feed_paths(base: str) -> list[str]:
    """A mix of first pages (every filter) and deeper pages (real cursors)."""
    paths = ["/feed?limit=20"]
    paths += [f"/feed?grade={g}&limit=20" for g in range(1, 13)]
    paths += ["/feed?subject=math&limit=20", "/feed?answered=false&limit=20"]
    cursor_paths = []
    for path in paths[:4]:
        _, body = http_json("GET", base + path)
        if body and body.get("next_cursor"):
            cursor_paths.append(f"{path}&cursor={body['next_cursor']}")
    return paths + cursor_paths


def read_cost(
    api: ApiProc, seconds: int, admin: psycopg.Connection[Any], db: str
) -> dict[str, Any]:
    """CPU per ``GET /feed`` of the API process and of PostgreSQL, under wrk."""
    script = RESULTS / f"cost-reads-{api.port}.lua"
    paths = ", ".join(f'"{p}"' for p in feed_paths(api.base))
    script.write_text(READ_LUA % {"paths": paths})
    wrk(api.base, script, 2, 16)
    api0, pg0, tx0 = cpu_seconds(api.pid), backend_cpu(admin, db), transactions(admin, db)
    result = wrk(api.base, script, seconds, 16)
    api1, pg1, tx1 = cpu_seconds(api.pid), backend_cpu(admin, db), transactions(admin, db)
    reads = result["rps"] * seconds
    pg = sum(pg1[p] - pg0[p] for p in pg1 if p in pg0)
    return {
        "rps": result["rps"],
        "non_2xx": result.get("non_2xx", 0),
        "db_transactions_per_read": round((tx1 - tx0) / reads, 3),
        "backends": sorted(pg1),
        "cpu_ms_per_read": {
            "api": round((api1 - api0) * 1000 / reads, 3),
            "postgres": round(pg * 1000 / reads, 3),
        },
        "reads_per_core_second": {
            "api": round(reads / (api1 - api0)) if api1 > api0 else None,
            "postgres": round(reads / pg) if pg > 0 else None,
        },
    }


def drained(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM qa.outbox WHERE published_at IS NULL),"
        " (SELECT count(*) FROM qa.outbox) - (SELECT count(*) FROM subscribers.inbox)"
    ).fetchone()
    return row is not None and row[0] == 0 and row[1] <= 0


def main(seconds: int = 10) -> dict[str, Any]:
    env = BenchEnv(database="qa_event_cost", vhost="qa-event-cost")
    env.setup()
    RESULTS.mkdir(exist_ok=True)
    admin = psycopg.connect(env.dsn, autocommit=True)
    try:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        oid = admin.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        db_oid = int(oid.fetchone()[0])  # type: ignore[index]
        token = create_token(env)
        pe = env.process_env()
        relay = Proc(["qa-relay"], pe, RESULTS / "cost-relay.log")
        feed = Proc(["qa-consumer", "feed"], pe, RESULTS / "cost-feed.log")
        with ApiProc(env, RESULTS / "cost-api.log") as api, relay, feed:
            api.wait_ready(120)
            ids = api.seed_questions(token, 50)
            script = RESULTS / "cost-answers.lua"
            script.write_text(LUA % {"ids": ", ".join(f'"{i}"' for i in ids), "token": token})
            wrk(api.base, script, 2, 16)  # warm-up
            while not drained(admin):
                time.sleep(0.2)
            events0 = admin.execute("SELECT count(*) FROM qa.outbox").fetchone()[0]  # type: ignore[index]
            # A temporary slot (dropped with this session) keeps the run's WAL from being
            # recycled before pg_walinspect reads it.
            admin.execute("SELECT pg_create_physical_replication_slot('qa_event_cost', true, true)")
            lsn0 = admin.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            procs = {"api": api.pid, "relay": relay.pid, "consumer": feed.pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            pg0 = backend_cpu(admin, env.database)
            result = wrk(api.base, script, seconds, 16)
            while not drained(admin):
                time.sleep(0.1)
            cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            pg1 = backend_cpu(admin, env.database)
            lsn1 = admin.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            events1 = admin.execute("SELECT count(*) FROM qa.outbox").fetchone()[0]  # type: ignore[index]
            wal = wal_for_db(admin, lsn0, lsn1, db_oid)
            reads = {"cached": read_cost(api, seconds, admin, env.database)}
            with ApiProc(
                env, RESULTS / "cost-api-nocache.log", QA_API_FEED_CACHE_SECONDS="0"
            ) as raw:
                raw.wait_ready(120)
                reads["uncached"] = read_cost(raw, seconds, admin, env.database)
        events = int(events1) - int(events0)
        cpu = {name: cpu1[name] - cpu0[name] for name in procs}
        cpu["postgres"] = sum(pg1[p] - pg0[p] for p in pg1 if p in pg0)
    finally:
        admin.close()
        env.teardown()
    report = {
        "events": events,
        "wrk_rps": result["rps"],
        "cpu_ms_per_event": {k: round(v * 1000 / events, 3) for k, v in cpu.items()},
        "events_per_core_second": {k: round(events / v) for k, v in cpu.items() if v > 0},
        "wal_bytes_per_event": round(wal["db_bytes"] / events),
        "wal_fpi_bytes_per_event": round(wal["db_fpi_bytes"] / events),
        "wal_all_databases_bytes": wal["all_bytes"],
        "feed_reads": reads,
        "load_average": os.getloadavg(),
    }
    (RESULTS / "event-cost.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
