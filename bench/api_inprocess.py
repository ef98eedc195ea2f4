"""CPU per answer of the API in-process, outbox on vs off (no HTTP server, no load tool).

    .venv/bin/python -m bench.api_inprocess [N]

Runs N sequential ``POST /questions/{id}/answers`` through ``httpx.ASGITransport`` against
``create_app`` on a private database, alternating the outbox on/off (``bench.no_outbox``) twice,
and prints process CPU and wall time per request. CPU time is much less sensitive to
other load on the machine than throughput, so it isolates what the outbox write costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from api.app import create_app
from bench.no_outbox import without_outbox
from outbox.db import make_engine
from outbox.migrate import ensure_database, upgrade
from outbox.settings import Settings
from outbox.tokens import hash_token, new_token

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432"


async def _measure(url: str, token: str, disable: bool, n: int) -> tuple[float, float]:
    app = create_app(Settings(database_url=url))
    variant = without_outbox() if disable else contextlib.nullcontext()
    with variant:
        return await _run(app, token, n)


async def _run(app: Any, token: str, n: int) -> tuple[float, float]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            auth = {"Authorization": f"Bearer {token}"}
            question = {"title": "t", "body": "b", "subject": "bench", "grade": 1}
            qid = (await client.post("/questions", json=question, headers=auth)).json()["id"]
            for _ in range(50):  # warm-up: prepared statements, caches
                await client.post(f"/questions/{qid}/answers", json={"body": "x"}, headers=auth)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                r = await client.post(f"/questions/{qid}/answers", json={"body": "x"}, headers=auth)
                if r.status_code != 201:
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text}")
            return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def _main(n: int) -> None:
    name = f"qa_bench_cpu_{uuid.uuid4().hex[:8]}"
    url = f"{ADMIN}/{name}"
    ensure_database(url)
    upgrade(url)
    token = new_token()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO qa.api_tokens (user_name, token_hash) VALUES ('bench', :h)"),
            {"h": hash_token(token)},
        )
    engine.dispose()
    try:
        for disable in (True, False, True, False):
            cpu, wall = await _measure(url, token, disable, n)
            mode = "off" if disable else "on "
            print(f"outbox {mode}: cpu {cpu:6.0f} us/request, wall {wall:6.0f} us/request")
    finally:
        admin = make_engine(f"{ADMIN}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
