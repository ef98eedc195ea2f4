"""Sharded relays (``QA_RELAY_SHARDS=N`` > 1): any number of processes share N shards.

Every outbox row carries a shard (``outbox.uow.shard_of``: md5 of the aggregate id mod
N, set by the writer), so all events of one aggregate are in one shard. Each shard has
its own leadership lock (``relay_lock_key + 2 * shard``, its work lock one above), and a
shard's leader runs the same claim -> publish -> mark pipeline as the single relay, over
that shard's rows only: per-aggregate order holds exactly as with one relay.

Each process holds a shared *member* lock, so every process can count the live ones (a
dead process's locks vanish with its connections). Every :data:`ROUND_SECONDS` the
coordinator reads the advisory locks from ``pg_locks`` (one query), computes its fair
share ``ceil(N / processes)``, gives up shards above it (most recently taken first) and
tries free shards below it, in random order so processes do not collide. A killed
process's shards are free as soon as PostgreSQL sees its connections close (at once for a
killed process: its kernel closes the sockets), and taken within a round. When two
processes try the same free shard, the loser starts its next round at once instead of
after the pause (at most every :data:`MIN_ROUND_SECONDS`), so a collision costs a query,
not a round: takeover measured at 0.3-0.6 s on this 2-core machine (e2e test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from typing import TYPE_CHECKING, Any

import psycopg

from relay import metrics

if TYPE_CHECKING:
    from relay.relay import Relay

log = logging.getLogger("qa.relay")

ROUND_SECONDS = 0.25
MIN_ROUND_SECONDS = 0.05  # the pause after a lost race for a shard
LOCKS_SQL = """
SELECT classid::bigint, objid::bigint, mode FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def shard_lock_key(base: int, shard: int) -> int:
    """Leadership lock of ``shard``; shard 0 uses the one-relay key (and its work lock)."""
    return base + 2 * shard


def member_lock_key(base: int) -> int:
    return base - 2


def _split(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows a bigint advisory lock."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def fair_share(shards: int, processes: int) -> int:
    return math.ceil(shards / max(1, processes))


class ShardCoordinator:
    """Keeps this process leading its fair share of the shards until cancelled."""

    def __init__(self, relay: Relay, shards: int) -> None:
        self._relay = relay
        self._shards = shards
        base = relay.settings.relay_lock_key
        self._member = _split(member_lock_key(base))
        self._keys = {_split(shard_lock_key(base, k)): k for k in range(shards)}
        self._tasks: dict[int, asyncio.Task[None]] = {}  # taken last = last in the dict
        self._lost_race = asyncio.Event()

    async def run(self) -> None:
        conn = await self._relay.connect("member", autocommit=True)
        try:
            await conn.execute(
                "SELECT pg_advisory_lock_shared(%s)",
                (member_lock_key(self._relay.settings.relay_lock_key),),
            )
            log.info("relay: sharing %d shards with the other relays", self._shards)
            while True:
                self._lost_race.clear()
                await self._round(conn)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ROUND_SECONDS):
                        await self._lost_race.wait()
                await asyncio.sleep(MIN_ROUND_SECONDS)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                await conn.close()

    async def _round(self, conn: psycopg.AsyncConnection[Any]) -> None:
        rows = await (await conn.execute(LOCKS_SQL)).fetchall()
        members = sum(1 for c, o, mode in rows if (c, o) == self._member and mode == "ShareLock")
        taken = {self._keys[(c, o)] for c, o, mode in rows if (c, o) in self._keys}
        for shard, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[shard]
        share = fair_share(self._shards, members)
        extra = len(self._tasks) - share
        for shard in list(self._tasks)[::-1][: max(0, extra)]:
            log.info("relay: giving up shard %d (fair share is %d)", shard, share)
            self._tasks.pop(shard).cancel()
        free = [k for k in range(self._shards) if k not in taken and k not in self._tasks]
        random.shuffle(free)
        for shard in free[: max(0, share - len(self._tasks))]:
            self._tasks[shard] = asyncio.create_task(self._lead(shard))

    async def _lead(self, shard: int) -> None:
        """One attempt at one shard: lead it until the term ends, or return at once."""
        from relay.relay import EXPECTED, describe

        conn = None
        try:
            conn = await self._relay.connect("lock", autocommit=True)
            if not await self._relay.term(conn, shard):
                self._lost_race.set()  # another process took it first: look again now
        except EXPECTED as exc:
            log.warning("relay: shard %d term ended: %s", shard, describe(exc))
        except Exception:
            log.exception("relay: shard %d term ended by an unexpected error", shard)
        finally:
            metrics.SHARDS_LED.set(len(self._relay.led))
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
