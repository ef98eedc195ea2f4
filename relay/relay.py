"""The relay loop: become leader, then claim -> publish -> mark until leadership ends.

One *term* of leadership runs three tasks: the lock watcher (LISTEN wake-ups and a
health check of the lock connection), the batch worker, and maintenance (backlog
gauges and retention). If any of them fails, the whole term ends at once: the worker
is cancelled (in-flight publishes are abandoned, the claim transaction rolls back, so
nothing is marked that was not confirmed), connections are closed, and the relay goes
back to competing for the lock after a short backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aio_pika.abc import AbstractRobustConnection
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from outbox.settings import Settings
from relay import backpressure, leader, metrics, store
from relay.pipeline import Pipeline
from relay.publisher import Publisher
from relay.shards import ShardCoordinator, shard_lock_key

log = logging.getLogger("qa.relay")

STATS_INTERVAL_SECONDS = 5.0
WORK_LOCK_TIMEOUT_SECONDS = 60.0
# Failures that end a leadership term without being a bug: connections lost.
EXPECTED: tuple[type[Exception], ...] = (psycopg.Error, OSError, leader.LeadershipLost)


def retention_interval(retention_seconds: float) -> float:
    """How often the leader purges: often enough to keep the table small, at most 60 s."""
    return min(60.0, max(1.0, retention_seconds / 10))


class Relay:
    """The outbox relay. ``run()`` never returns on its own; cancel it to stop."""

    def __init__(
        self, settings: Settings, amqp: AbstractRobustConnection, name: str = "qa-relay"
    ) -> None:
        self.settings = settings
        self.name = name
        self.publisher = Publisher(amqp, settings.relay_publish_timeout_seconds)
        self._amqp = amqp
        self.is_leader = False  # leads everything (one shard) or shard 0 (runs maintenance)
        self.led: set[int] = set()  # shards led now (QA_RELAY_SHARDS > 1)
        self._idle_tx_ms = round(settings.relay_publish_timeout_seconds * 2000)

    async def connect(self, role: str, *, autocommit: bool) -> psycopg.AsyncConnection[Any]:
        return await store.connect(
            self.settings.database_url,
            application_name=f"{self.name}-{role}",
            autocommit=autocommit,
            idle_tx_timeout_ms=self._idle_tx_ms,
        )

    async def run(self, lock_conn: psycopg.AsyncConnection[Any] | None = None) -> None:
        """Compete for leadership forever; ``lock_conn`` is an already-open lock connection."""
        async for attempt in self._retrying():
            with attempt:
                await self.publisher.start()
        if self.settings.relay_shards > 1:
            if lock_conn is not None:
                await lock_conn.close()
            while True:  # a lost member connection: start over, like a lost term
                try:
                    await ShardCoordinator(self, self.settings.relay_shards).run()
                except EXPECTED as exc:
                    log.warning("relay: shard coordination ended: %s", describe(exc))
                await asyncio.sleep(1.0)
        backoff = 0.5
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            conn = lock_conn
            lock_conn = None
            try:
                if conn is None or conn.closed:
                    conn = await self.connect("lock", autocommit=True)
                await self._term(conn)
            except EXPECTED as exc:
                log.warning("relay: leadership term ended: %s", describe(exc))
            except Exception:
                log.exception("relay: leadership term ended by an unexpected error")
            finally:
                self._set_leader(False)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            if loop.time() - started > 30:
                backoff = 0.5  # a long healthy term: the next failure starts over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _set_leader(self, value: bool, shard: int | None = None) -> None:
        if shard is not None:
            (self.led.add if value else self.led.discard)(shard)
            metrics.SHARDS_LED.set(len(self.led))
            if shard != 0:
                return
        self.is_leader = value
        metrics.IS_LEADER.set(1 if value else 0)
        if not value:
            metrics.forget_outbox_figures()

    async def term(self, lock_conn: psycopg.AsyncConnection[Any], shard: int | None = None) -> bool:
        """Lead ``shard`` (None: everything) if its lock is free right now; return False at
        once when it is not. Used by the shard coordinator."""
        key = shard_lock_key(self.settings.relay_lock_key, shard or 0)
        if not await leader.try_lock(lock_conn, key):
            return False
        await self._term(lock_conn, shard, locked=True)
        return True

    async def _term(
        self,
        lock_conn: psycopg.AsyncConnection[Any],
        shard: int | None = None,
        locked: bool = False,
    ) -> None:
        key = shard_lock_key(self.settings.relay_lock_key, shard or 0)
        if not locked:
            await leader.wait_for_lock(lock_conn, key)
        await leader.start_listening(lock_conn)
        wake = asyncio.Event()
        conns: list[psycopg.AsyncConnection[Any]] = []
        try:
            fence = await self.connect("work", autocommit=True)
            conns.append(fence)
            if not await leader.wait_for_lock(
                fence, leader.work_lock_key(key), WORK_LOCK_TIMEOUT_SECONDS
            ):
                raise leader.LeadershipLost("a previous leader still holds the work lock")
            await fence.set_autocommit(False)
            for _ in range(self.settings.relay_pipeline_depth - 1):
                conns.append(await self.connect("work", autocommit=False))
            work = list(conns)
            maint = await self.connect("maintenance", autocommit=True)
            conns.append(maint)
            pipeline = Pipeline(
                self.publisher,
                work,
                self.settings.relay_batch_size,
                self.settings.relay_poll_interval_seconds,
                wake,
                self._broker_ready,
                shard,
            )
            self._set_leader(True, shard)
            log.info("relay: became leader%s", "" if shard is None else f" of shard {shard}")
            wake.set()
            check_every = min(0.5, self.settings.relay_poll_interval_seconds)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(leader.watch(lock_conn, wake, check_every))
                    tasks.create_task(pipeline.run())
                    if not shard:  # one leader measures the backlog and purges
                        tasks.create_task(self._maintain(maint))
            except ExceptionGroup as group:
                # The first failure ended the term; the others are its consequences.
                raise group.exceptions[0] from None
        finally:
            self._set_leader(False, shard)
            for conn in conns:
                with contextlib.suppress(Exception):
                    await conn.close()

    @staticmethod
    def _retrying() -> AsyncRetrying:
        """Broker trouble after start-up: retry forever, backing off, one log line each."""
        return AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            retry=retry_if_exception_type(Exception),
            before_sleep=before_sleep_log(log, logging.WARNING),
        )

    async def _broker_ready(self) -> None:
        """Block until the broker accepts publishes: no resource alarm blocking this
        connection, and the channel usable (with backoff and a log line per retry)."""
        await backpressure.wait_while_blocked(self._amqp)
        if self.publisher.usable():  # the usual case: no retry machinery per batch
            return
        async for attempt in self._retrying():
            with attempt:
                await self.publisher.ready(within=5.0)

    async def _maintain(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        every = retention_interval(self.settings.relay_retention_seconds)
        while True:
            pending, age, failing = await store.backlog(conn)
            if self.settings.relay_shards > 1:
                moved = await store.rehome(conn, self.settings.relay_shards)
                if moved:
                    log.warning("relay: %d pending rows of removed shards re-homed", moved)
            metrics.BACKLOG.set(pending)
            metrics.OLDEST_PENDING_AGE.set(age)
            metrics.FAILING.set(failing)
            if loop.time() >= next_purge:
                deleted = await store.purge_published(
                    conn, self.settings.relay_retention_seconds, self.settings.relay_retention_batch
                )
                metrics.PURGED.inc(deleted)
                if deleted:
                    log.info("relay: retention deleted %d published rows", deleted)
                next_purge = loop.time() + every
            await asyncio.sleep(min(STATS_INTERVAL_SECONDS, every))


def describe(exc: BaseException) -> str:
    # psycopg messages can quote the DSN host but never the password; keep one line.
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
