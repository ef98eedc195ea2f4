"""``GET /feed`` under read load, against ``GET /healthz`` of the same ``qa-api`` process.

1. Seed ``feed.questions`` with 2M realistic rows (200k quick; :mod:`bench.feed_seed`).
2. Start ``qa-api`` and collect the request mix from **real responses**: for every filter
   combination (21 subject choices x 13 grade choices x 3 answered choices) the first
   page and the next pages by following ``next_cursor`` up to 10 deep.
3. ``wrk -t1 -c16`` with a Lua script drawing each request from that mix: a filter
   combination by popularity (subjects as seeded, "no filter" the most common), then a
   page depth (first page 60 %, deeper pages less and less often). ``/healthz`` runs
   through the same Lua machinery (same client cost); rounds alternate health/feed so
   drift hits both alike; the median round of each is reported.

The judged figures: feed requests/s over /healthz requests/s (target >= 0.5) and the
feed's p99 (target <= 25 ms). A ``variants`` mapping lets the same run also measure the
API with other settings (e.g. the cache off) for the "what each step bought" table.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu, feed_seed
from bench.api_write import wrk
from bench.apiproc import ApiProc
from bench.common import require_module
from bench.env import BenchEnv
from bench.stats import percentile

MAX_DEPTH = 10
# Extra configurations measured in the same run, beside the default one (name -> env).
VARIANTS: dict[str, dict[str, str]] = {
    "fast-path-off": {"QA_API_FEED_FAST_PATH": "false"},
    "cache-off": {"QA_API_FEED_CACHE_SECONDS": "0"},
    "workers-2": {"QA_API_WORKERS": "2"},
}
FIRST_PAGE_SHARE = 0.6

Combo = tuple[str | None, int | None, bool | None]

_LUA = """
local combos = {%(combos)s}
local cum = {%(cum)s}
local depth_cum = {%(depth_cum)s}
math.randomseed(%(seed)d)
local function pick(c, r)
  local lo, hi = 1, #c
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if c[mid] < r then lo = mid + 1 else hi = mid end
  end
  return lo
end
request = function()
  local paths = combos[pick(cum, math.random() * cum[#cum])]
  local depth = pick(depth_cum, math.random() * depth_cum[#depth_cum])
  if depth > #paths then depth = #paths end
  return wrk.format("GET", paths[depth])
end
"""
_HEALTH_LUA = """
request = function()
  return wrk.format("GET", "/healthz")
end
"""


def combos() -> list[tuple[Combo, float]]:
    """Every filter combination with its share of requests (shares sum to 1)."""
    subject_total = sum(w for _, w in feed_seed.SUBJECTS)
    grade_total = sum(feed_seed.GRADE_WEIGHTS)
    subjects: list[tuple[str | None, float]] = [(None, 0.4)] + [
        (name, 0.6 * w / subject_total) for name, w in feed_seed.SUBJECTS
    ]
    grades: list[tuple[int | None, float]] = [(None, 0.5)] + [
        (g + 1, 0.5 * w / grade_total) for g, w in enumerate(feed_seed.GRADE_WEIGHTS)
    ]
    answered: list[tuple[bool | None, float]] = [(None, 0.6), (False, 0.3), (True, 0.1)]
    return [
        ((s, g, a), sw * gw * aw) for s, sw in subjects for g, gw in grades for a, aw in answered
    ]


def depth_weights() -> list[float]:
    """Share of first pages (index 0) and of cursor pages 1..10 deep (falling as 1/d)."""
    harmonic = sum(1 / d for d in range(1, MAX_DEPTH + 1))
    return [FIRST_PAGE_SHARE] + [
        (1 - FIRST_PAGE_SHARE) * (1 / d) / harmonic for d in range(1, MAX_DEPTH + 1)
    ]


def _query(combo: Combo) -> dict[str, str]:
    subject, grade, answered = combo
    params: dict[str, str] = {}
    if subject is not None:
        params["subject"] = subject
    if grade is not None:
        params["grade"] = str(grade)
    if answered is not None:
        params["answered"] = "true" if answered else "false"
    return params


def _walk(port: int, combo: Combo) -> list[str]:
    """The first page's path and the paths of the next pages, cursors from the responses."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    paths: list[str] = []
    params = _query(combo)
    try:
        for _ in range(MAX_DEPTH + 1):
            path = "/feed" + ("?" + urllib.parse.urlencode(params) if params else "")
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
            paths.append(path)
            cursor = json.loads(body)["next_cursor"]
            if cursor is None:
                break
            params = {**_query(combo), "cursor": cursor}
    finally:
        conn.close()
    return paths


def collect_mix(port: int) -> list[tuple[list[str], float]]:
    """Paths per filter combination (first page first) and the combination's share."""
    weighted = combos()
    with ThreadPoolExecutor(max_workers=4) as pool:
        walks = list(pool.map(lambda cw: _walk(port, cw[0]), weighted))
    return [(paths, w) for paths, (_, w) in zip(walks, weighted, strict=True) if paths]


def lua_script(mix: list[tuple[list[str], float]], seed: int = 42) -> str:
    cum, total = [], 0.0
    for _, weight in mix:
        total += weight
        cum.append(f"{total:.9f}")
    depth_cum, running = [], 0.0
    for weight in depth_weights():
        running += weight
        depth_cum.append(f"{running:.9f}")
    tables = ",\n".join("{" + ", ".join(json.dumps(p) for p in paths) + "}" for paths, _ in mix)
    return _LUA % {
        "combos": tables,
        "cum": ", ".join(cum),
        "depth_cum": ", ".join(depth_cum),
        "seed": seed,
    }


_CPU_KEYS = ("api_cpu_us_per_request", "pg_cpu_us_per_request")


def _tree_cpu(root: int) -> float:
    return cpu.snapshot({"api": root})["api"]


def _backends(env: BenchEnv) -> list[int]:
    """PIDs of the PostgreSQL backends serving the API under test (its pools)."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'qa-api'",
            (env.database,),
        ).fetchall()
    return [row[0] for row in rows]


def _backends_cpu(pids: list[int]) -> float:
    """CPU seconds of those backends (a backend that exited meanwhile counts 0)."""
    return sum(cpu.snapshot({str(pid): pid for pid in pids}).values())


def measure(
    api: ApiProc,
    scripts: dict[str, Path],
    rounds: int,
    seconds: int,
    connections: int,
    env: BenchEnv | None = None,
) -> dict[str, Any]:
    """Alternating wrk rounds per script; per round rps, latency, and the CPU per request
    of the API process tree and (with ``env``) of its PostgreSQL backends."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scripts}
    for _ in range(rounds):
        for name, script in scripts.items():
            backends = _backends(env) if env is not None else []
            cpu0, pg0 = _tree_cpu(api.pid), _backends_cpu(backends)
            result = wrk(api.base, script, seconds, connections)
            cpu, pg = _tree_cpu(api.pid) - cpu0, _backends_cpu(backends) - pg0
            requests = result["rps"] * seconds
            result["api_cpu_us_per_request"] = cpu / requests * 1e6 if requests else None
            if env is not None:
                result["pg_cpu_us_per_request"] = pg / requests * 1e6 if requests else None
            result["load_average"] = os.getloadavg()[0]
            runs[name].append(result)
    summary: dict[str, Any] = {"runs": runs}
    for name, each in runs.items():
        summary[name] = {
            key: percentile([r[key] for r in each], 50)
            for key in ("rps", "p50_ms", "p99_ms", *_CPU_KEYS)
            if all(r.get(key) is not None for r in each)
        }
        summary[name]["non_2xx"] = sum(r["non_2xx"] for r in each)
    return summary


def _variant(
    env: BenchEnv,
    results: Path,
    name: str,
    overrides: dict[str, str],
    rounds: int,
    seconds: int,
    connections: int,
    profile: bool,
) -> dict[str, Any]:
    api = ApiProc(
        env,
        results / f"feed-read-api-{name}.log",
        results / f"profile-feed-read-{name}.raw" if profile else None,
        **overrides,
    )
    with api:
        api.wait_ready()
        began = time.monotonic()
        mix = collect_mix(api.port)
        collected = time.monotonic() - began
        feed_lua = results / f"feed-read-{name}.lua"
        feed_lua.write_text(lua_script(mix))
        health_lua = results / "feed-read-healthz.lua"
        health_lua.write_text(_HEALTH_LUA)
        wrk(api.base, feed_lua, 2, connections)  # warm-up: connections, caches, page cache
        summary = measure(
            api, {"healthz": health_lua, "feed": feed_lua}, rounds, seconds, connections, env
        )
    feed, health = summary["feed"], summary["healthz"]
    summary.update(
        {
            "settings": overrides,
            "paths": sum(len(paths) for paths, _ in mix),
            "combinations": len(mix),
            "mix_collect_seconds": round(collected, 1),
            "ratio": feed["rps"] / health["rps"] if health.get("rps") else None,
        }
    )
    return summary


def run(
    env: BenchEnv,
    quick: bool,
    results: Path,
    profile: bool,
    variants: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Seed, then measure the default configuration and each extra variant."""
    require_module("api.main", "the API")
    env.reset_tables()
    rows = 200_000 if quick else 2_000_000
    seeded = feed_seed.seed(env.dsn, rows, time.time())
    rounds, seconds, connections = (2, 5, 16) if quick else (3, 10, 16)
    out: dict[str, Any] = {"seed": seeded, "connections": connections, "seconds": seconds}
    out["default"] = _variant(env, results, "default", {}, rounds, seconds, connections, profile)
    out["variants"] = {
        name: _variant(env, results, name, overrides, rounds, seconds, connections, False)
        for name, overrides in (variants or {}).items()
    }
    default = out["default"]
    out["ratio"] = default["ratio"]
    out["feed_rps"] = default["feed"]["rps"]
    out["healthz_rps"] = default["healthz"]["rps"]
    out["feed_p99_ms"] = default["feed"].get("p99_ms")
    return out
