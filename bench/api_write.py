"""API write throughput with and without the outbox write, under ``wrk`` (a real external
HTTP load generator), against ``qa-api`` subprocesses.

The two modes alternate (with, without, with, without...) so drift (table growth, page
cache, other load) hits both alike; each mode's figure is the median of its rounds. The
outbox-off mode is the benchmark's variant ``python -m bench.no_outbox``: the API skips
only the outbox write.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from bench.apiproc import ApiProc, create_token
from bench.common import NotAvailable, require_module
from bench.env import BenchEnv
from bench.stats import percentile

LUA = """
local ids = {%(ids)s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.body = '{"body":"An answer written by the benchmark load generator, about 60 chars."}'
request = function()
  n = n + 1
  return wrk.format(nil, "/questions/" .. ids[(n %% #ids) + 1] .. "/answers")
end
"""

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors:.*")
_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, non-2xx count, socket errors and p50/p99 (ms) from ``wrk --latency``."""
    rps = _RPS.search(output)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec: {output[-300:]}")
    non2xx = _NON2XX.search(output)
    errors = _ERRORS.search(output)
    result: dict[str, Any] = {
        "rps": float(rps.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }
    for pct, value, unit in _PCT.findall(output):
        result[f"p{pct}_ms"] = float(value) * _UNIT[unit]
    return result


def wrk(base: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise NotAvailable("wrk is not installed (apt-get install -y wrk)")
    out = subprocess.run(
        [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    return parse_wrk(out)


def _outbox_rows(env: BenchEnv) -> int:
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM qa.outbox").fetchone()
        return int(row[0]) if row else 0


def _one_mode(
    env: BenchEnv,
    results: Path,
    token: str,
    disable: bool,
    seconds: int,
    connections: int,
    tag: str,
    profile: bool,
) -> dict[str, Any]:
    name = "without" if disable else "with"
    api = ApiProc(
        env,
        results / f"api-{name}-{tag}.log",
        results / f"profile-api-{name}.raw" if profile and tag == "r1" else None,
        without_outbox=disable,
    )
    with api:
        api.wait_ready()
        ids = api.seed_questions(token, 50)
        script = results / f"answers-{tag}.lua"
        script.write_text(LUA % {"ids": ", ".join(f'"{i}"' for i in ids), "token": token})
        wrk(api.base, script, 2, connections)  # warm-up: connections, caches, JIT-free paths
        before = _outbox_rows(env)
        result = wrk(api.base, script, seconds, connections)
        result["outbox_rows_written"] = _outbox_rows(env) - before
    return result


def run(env: BenchEnv, quick: bool, results: Path, profile: bool) -> dict[str, Any]:
    require_module("api.main", "the API")
    env.reset_tables()
    token = create_token(env)
    rounds, seconds, connections = (1, 4, 16) if quick else (3, 8, 16)
    runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
    for n in range(rounds):
        for disable in (False, True):
            key = "without" if disable else "with"
            runs[key].append(
                _one_mode(env, results, token, disable, seconds, connections, f"r{n + 1}", profile)
            )
    # Median of the rounds: one round disturbed by other load on the machine does not
    # decide the ratio.
    mean = {k: percentile([r["rps"] for r in v], 50) for k, v in runs.items()}
    return {
        "connections": connections,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "with_outbox_rps": mean["with"],
        "without_outbox_rps": mean["without"],
        "runs": runs,
    }
