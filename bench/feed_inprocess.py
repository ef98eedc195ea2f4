"""CPU per ``GET /feed`` request of the API in-process (no HTTP server, no load tool).

    .venv/bin/python -m bench.feed_inprocess DATABASE_URL [N]

Against a database whose ``feed.questions`` is already seeded (``bench.feed_seed``):
walks the feed's filter combinations and cursor pages through ``httpx.ASGITransport``
(the paths come from real responses, as in the ``feed-read`` part), then replays N of
them in the part's mix and prints process CPU and wall time per request, for the cache
off and on. CPU time is far less sensitive to other load on the machine than
throughput, so this isolates what a change to the read path costs or saves.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

import httpx

from api.app import create_app
from bench.feed_read import combos, depth_weights
from outbox.settings import Settings


async def _walk(client: httpx.AsyncClient, params: dict[str, Any]) -> list[str]:
    paths = []
    for _ in range(len(depth_weights())):
        request = client.build_request("GET", "/feed", params=params)
        response = await client.send(request)
        response.raise_for_status()
        paths.append(str(request.url.raw_path.decode()))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        params = {**params, "cursor": cursor}
    return paths


def _params(combo: tuple[Any, ...]) -> dict[str, Any]:
    subject, grade, answered = combo
    out: dict[str, Any] = {}
    if subject is not None:
        out["subject"] = subject
    if grade is not None:
        out["grade"] = grade
    if answered is not None:
        out["answered"] = "true" if answered else "false"
    return out


async def _measure(url: str, n: int, overrides: dict[str, Any]) -> tuple[float, float]:
    app = create_app(Settings(database_url=url, **overrides))
    rng = random.Random(42)
    weighted = combos()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            picked = rng.choices(weighted, weights=[w for _, w in weighted], k=60)
            walks = [await _walk(client, _params(combo)) for combo, _ in picked]
            depths = rng.choices(range(len(depth_weights())), weights=depth_weights(), k=n)
            paths = [
                walks[i % len(walks)][min(d, len(walks[i % len(walks)]) - 1)]
                for i, d in enumerate(depths)
            ]
            for path in paths[:100]:  # warm-up
                await client.get(path)
            cpu, wall = time.process_time(), time.perf_counter()
            for path in paths:
                response = await client.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
            return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def _main(url: str, n: int) -> None:
    for name, overrides in (("cache off", {"api_feed_cache_seconds": 0}), ("default", {})):
        try:
            cpu, wall = await _measure(url, n, overrides)
        except Exception as exc:  # a setting this version does not know
            print(f"{name}: {type(exc).__name__}: {exc}")
            continue
        print(f"{name:9}: cpu {cpu:6.0f} us/request, wall {wall:6.0f} us/request")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
