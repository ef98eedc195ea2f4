"""``qa-consumer dead-letters`` as a real process: ready signal, SIGKILL, SIGTERM."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import aio_pika
import httpx
from sqlalchemy import Engine

from outbox.settings import Settings
from tests.integration.test_archiver import (  # the channel fixture is used by name
    channel,  # noqa: F401
    dead_letter_headers,
    publish_dead,
    rows_for,
    wait_until,
)
from tests.support.procs import spawn


async def test_archiver_process_survives_sigkill_and_stops_cleanly_on_sigterm(
    settings: Settings,
    channel: aio_pika.abc.AbstractChannel,  # noqa: F811 (the fixture imported above)
    db: Engine,
    tmp_path: Path,
) -> None:
    proc = spawn("dead-letters", tmp_path)
    proc.start()
    try:
        first = dead_letter_headers()
        await publish_dead(channel, b'{"n": 1}', first)
        await wait_until(lambda: rows_for(db, "dedup_key", first["x-dead-letter-id"]), 30)

        proc.kill()
        second = dead_letter_headers()
        await publish_dead(channel, b'{"n": 2}', second)
        await publish_dead(channel, b'{"n": 1}', first)  # a redelivered copy
        proc.start()
        await wait_until(lambda: rows_for(db, "dedup_key", second["x-dead-letter-id"]), 30)
        async with httpx.AsyncClient(timeout=5) as client:
            port = proc.env["QA_ARCHIVER_METRICS_PORT"]
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert "qa_dead_letters_archived_total" in metrics.text
        assert proc.terminate() == 0, proc.log_tail()
    finally:
        proc.kill()
    assert len(rows_for(db, "dedup_key", first["x-dead-letter-id"])) == 1
    assert "Traceback" not in proc.log_text()


def test_archiver_process_exits_1_with_a_reason_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    overrides = {
        "QA_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:1/x{uuid.uuid4().hex[:6]}",
        "QA_STARTUP_TIMEOUT_SECONDS": "0.5",
    }
    proc = spawn("dead-letters", tmp_path, overrides)
    proc.start(wait=False)
    assert proc.popen is not None
    assert proc.popen.wait(60) == 1
    assert "cannot start" in proc.log_text()
    # The line names the database (password masked) and the reason.
    assert re.search(r"database postgresql\S+ unreachable after", proc.log_text())
