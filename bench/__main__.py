"""``python -m bench``: ceilings first, then the system, one JSON result file.

Examples::

    .venv/bin/python -m bench                 # everything (~10 minutes on 2 cores)
    .venv/bin/python -m bench --quick         # smaller sizes (~3 minutes)
    .venv/bin/python -m bench --only relay    # the publish ceiling and the relay drain
    .venv/bin/python -m bench --only api --profile   # with py-spy on the subprocesses
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import uvloop
from pydantic import SecretStr
from rich.console import Console

from bench import api_write, ceilings, claim, cost, feed_apply, feed_read, latency, relay_drain
from bench.common import RESULTS, NotAvailable
from bench.env import BenchEnv
from bench.profiling import summarize
from bench.report import print_table, write_json
from outbox.settings import Settings

PARTS = ("ceilings", "relay", "feed", "api", "latency", "claim", "feed-read", "cost")
KEYS = {"relay": "relay_drain", "feed": "feed_apply", "api": "api_write", "feed-read": "feed_read"}
console = Console(width=150)


def _settings(env: BenchEnv) -> Settings:
    return Settings(database_url=SecretStr(env.database_url), amqp_url=SecretStr(env.amqp_url))


def _profiles(results: Path) -> dict[str, Any]:
    return {p.stem: summarize(p) for p in sorted(results.glob("profile-*.raw"))}


def _run_part(
    part: str,
    env: BenchEnv,
    settings: Settings,
    quick: bool,
    results: Path,
    profile: bool,
    api_procs: int,
) -> dict[str, Any]:
    if part == "ceilings":
        return ceilings.run(env, settings, quick)
    if part == "relay":
        return relay_drain.run(env, settings, quick, results, profile)
    if part == "feed":
        return feed_apply.run(env, settings, quick, results, profile)
    if part == "api":
        return api_write.run(env, quick, results, profile)
    if part == "latency":
        return latency.run(env, settings, quick, results, profile, api_procs)
    if part == "feed-read":
        return feed_read.run(env, quick, results, profile, feed_read.VARIANTS)
    if part == "cost":
        return cost.run(env, settings, quick, results)
    return claim.run(env, quick, settings.relay_batch_size)


def main(
    only: Annotated[list[str] | None, typer.Option(help=f"Run only these parts: {PARTS}")] = None,
    quick: Annotated[
        bool, typer.Option(help="Smaller sizes (20k events, 100k claim rows)")
    ] = False,
    profile: Annotated[bool, typer.Option(help="py-spy record the processes under test")] = False,
    out: Annotated[Path | None, typer.Option(help="Result file (JSON)")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the qa_bench database and vhost")] = False,
    api_procs: Annotated[
        int, typer.Option(help="qa-api processes behind the latency load", min=1)
    ] = 2,
) -> None:
    """Measure this machine's ceilings, then the system against them."""
    # The raw strategies, the peer relay and the load generators run on uvloop, the loop
    # the services run on (QA_EVENT_LOOP's default): a ceiling measured on the slower
    # loop would flatter the system.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    parts = list(only or PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise typer.BadParameter(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    if {"relay", "feed"} & set(parts) and "ceilings" not in parts:
        parts.insert(0, "ceilings")  # their ratios need the ceilings of this run
    parts.sort(key=PARTS.index)
    results = RESULTS
    results.mkdir(parents=True, exist_ok=True)
    if profile:  # stale stacks would be summarised as this run's
        for stale in results.glob("profile-*.raw"):
            stale.unlink()
    env = BenchEnv()
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "status": {},
        # Other work on the machine skews single figures; the load average says how much.
        "load_average": {"start": os.getloadavg()},
        "seconds": {},
    }
    console.print(
        f"[bold]bench[/]: parts {parts}, quick={quick}, database {env.database}, vhost {env.vhost}"
    )
    env.setup()
    settings = _settings(env)
    result["settings"] = {
        k: getattr(settings, k)
        for k in (
            "relay_batch_size",
            "relay_publish_timeout_seconds",
            "consumer_prefetch",
            "consumer_batch_size",
            "consumer_batch_wait_ms",
        )
    }
    try:
        for part in parts:
            began = time.monotonic()
            console.print(f"[bold]{part}[/] ...")
            try:
                result[KEYS.get(part, part)] = _run_part(
                    part, env, settings, quick, results, profile, api_procs
                )
                result["status"][part] = "ok"
            except NotAvailable as exc:
                result["status"][part] = f"not measured yet: {exc}"
            except Exception as exc:  # one broken part must not hide the others' figures
                result["status"][part] = f"failed: {type(exc).__name__}: {exc}"
                traceback.print_exc()
            took = time.monotonic() - began
            result["seconds"][part] = round(took, 1)
            result["load_average"][part] = os.getloadavg()
            console.print(f"  {part}: {result['status'][part]} ({took:.0f}s)")
    finally:
        if not keep:
            env.teardown()
    if profile:
        result["profiles"] = _profiles(results)
    path = out or results / ("latest-quick.json" if quick else "latest.json")
    write_json(result, path)
    print_table(result, console)
    console.print(f"result file: {path}")


if __name__ == "__main__":
    typer.run(main)
