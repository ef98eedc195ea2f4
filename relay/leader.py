"""Leader election with PostgreSQL session-level advisory locks, and the LISTEN wake-up.

One relay is active: it holds ``settings.relay_lock_key`` on a dedicated autocommit
connection, which also LISTENs on ``qa_outbox``. Standbys retry ``pg_try_advisory_lock``
every :data:`STANDBY_RETRY_SECONDS`; when the leader dies its backend ends, the lock is
released and a standby takes over.

A second lock (the *work* lock, ``relay_lock_key + 1``) is taken by the connection that
claims and marks rows. A new leader waits for it, so it never claims while a previous
leader's claim transaction is still alive (that would let SKIP LOCKED jump over the
previous leader's rows and break per-aggregate order), and a leader that lost its lock
connection but still runs cannot publish alongside the new one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

log = logging.getLogger("qa.relay.leader")

CHANNEL = "qa_outbox"
STANDBY_RETRY_SECONDS = 0.25
HEALTH_CHECK_TIMEOUT = 2.0


class LeadershipLost(Exception):
    """The lock connection failed: the lock may already belong to another relay."""


def work_lock_key(lock_key: int) -> int:
    """The key of the work lock; stays inside PostgreSQL's signed 64-bit range."""
    return lock_key + 1 if lock_key < 2**63 - 1 else lock_key - 1


async def try_lock(conn: psycopg.AsyncConnection[Any], key: int) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def wait_for_lock(
    conn: psycopg.AsyncConnection[Any], key: int, give_up_after: float | None = None
) -> bool:
    """Retry ``pg_try_advisory_lock`` until it succeeds (or ``give_up_after`` seconds pass)."""
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after is None else loop.time() + give_up_after
    while not await try_lock(conn, key):
        if deadline is not None and loop.time() >= deadline:
            return False
        await asyncio.sleep(STANDBY_RETRY_SECONDS)
    return True


async def start_listening(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(f"LISTEN {CHANNEL}")


async def watch(
    conn: psycopg.AsyncConnection[Any], wake: asyncio.Event, check_every: float
) -> None:
    """Forward notifications to ``wake`` and check the lock connection every
    ``check_every`` seconds. Raises :class:`LeadershipLost` as soon as it fails."""
    try:
        while True:
            async for _ in conn.notifies(timeout=check_every):
                wake.set()
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT):  # not wait_for: it can
                await conn.execute("SELECT 1")  # swallow a cancellation on 3.11
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise LeadershipLost(f"lock connection failed: {type(exc).__name__}") from exc
