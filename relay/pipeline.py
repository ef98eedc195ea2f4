"""The batch loop of the leader: claim -> publish -> mark, ``depth`` batches overlapping.

While batch N waits for its confirms, batches N+1 .. N+depth-1 are claimed, each on a
connection of its own (``FOR UPDATE SKIP LOCKED`` passes over the earlier batches'
locked rows), and their publishes are queued behind N's on the same channel, so the
broker never sits idle while a batch is marked and the next one claimed, and messages
still leave in id order. Each batch is its own short transaction: it opens at the claim
and commits right after the mark, bounded by the publish timeout. A batch whose mark
fails rolls back; its rows stay pending and are published again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from outbox import tracing
from outbox.runtime import cancel_requests, stop_if_cancel_swallowed
from relay import crashpoints, metrics, store
from relay.publisher import InFlight, Publisher
from relay.spans import BatchSpans

log = logging.getLogger("qa.relay")

Conn = psycopg.AsyncConnection[Any]

# Failure reasons that say "the broker link is down", not "this row is bad".
BROKER_WIDE = frozenset({"timeout", "channel"})
# Pause after a batch that met a broker-wide failure, so a flapping link cannot spin.
BROKER_FAILURE_PAUSE = 0.5


class Pipeline:
    """Runs batches on its non-autocommit connections (one per batch in flight) until
    cancelled or a DB error."""

    def __init__(
        self,
        publisher: Publisher,
        conns: list[Conn],
        batch_size: int,
        poll_interval: float,
        wake: asyncio.Event,
        broker_ready: Callable[[], Awaitable[None]],
        shard: int | None = None,
    ) -> None:
        self._shard = shard
        self._publisher = publisher
        self._conns = conns
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = wake
        self._broker_ready = broker_ready

    async def run(self) -> None:
        depth = len(self._conns)
        batches: list[asyncio.Task[None]] = []  # at most ``depth``, oldest first
        publishing: list[InFlight] = []
        turn = 0
        try:
            while True:
                await self._broker_ready()
                self._wake.clear()
                conn = self._conns[turn % depth]
                turn += 1
                started = time.perf_counter()
                rows = await store.claim(conn, self._batch_size, self._shard)
                metrics.CLAIMS.inc()
                if rows:
                    crashpoints.crash_point("after_claim")
                    spans = BatchSpans(rows) if tracing.enabled() else None
                    inflight = await self._publisher.begin(rows)
                    publishing = [*publishing, inflight][-depth:]
                    batches.append(
                        asyncio.create_task(self._finish(conn, rows, inflight, started, spans))
                    )
                else:
                    await conn.rollback()
                # Keep depth-1 batches in flight while claiming the next one. A short
                # batch means the backlog is drained: let every batch settle, then wait
                # for a wake-up (already set if rows were committed since the claim's
                # snapshot: their NOTIFY came after the clear above) or the poll
                # interval, instead of a claim that would find nothing. Under a trickle
                # that halves the relay's round trips per event.
                drained = len(rows) < self._batch_size
                while len(batches) > (0 if drained else depth - 1):
                    await batches[0]  # re-raises a failed mark: the term ends
                    batches.pop(0)
                if drained:  # every batch has settled: sleep until woken or polled
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that arrives as the wait ends, and the loop would run on.
                    before = cancel_requests()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_interval):
                            await self._wake.wait()
                    stop_if_cancel_swallowed(before)  # 3.11's timeout can swallow a stop
        finally:
            # A batch task cancelled before it ran never reaches its own cleanup.
            for inflight in publishing:
                inflight.cancel()
            for batch in batches:
                batch.cancel()
            await asyncio.gather(*batches, return_exceptions=True)

    async def _finish(
        self,
        conn: Conn,
        rows: list[store.PendingRow],
        inflight: InFlight,
        started: float,
        spans: BatchSpans | None = None,
    ) -> None:
        outcome = None
        try:
            await crashpoints.crash_point_after_flush("after_publish")
            outcome = await inflight.settle()
            crashpoints.crash_point("after_confirm")
            await store.mark_published(conn, outcome.published)
            # A lost connection or a stalled broker is not the row's fault: such rows stay
            # pending untouched (no attempt count, no backoff) so that they go out as soon
            # as the broker is back, instead of waiting out minutes of per-row backoff.
            row_faults = {
                row_id: error
                for row_id, error in outcome.failed.items()
                if outcome.reasons.get(row_id) not in BROKER_WIDE
            }
            await store.mark_failed(conn, row_faults)
            await conn.commit()
        except BaseException:
            inflight.cancel()
            # Roll back so nothing is marked; if the connection is gone, so is the tx.
            with contextlib.suppress(Exception):
                await conn.rollback()
            raise
        finally:
            if spans is not None:
                spans.finish(outcome)
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(rows))
        metrics.PUBLISHED.inc(len(outcome.published))
        for reason in outcome.reasons.values():
            metrics.FAILED.labels(reason).inc()
        if outcome.failed:
            sample = next(iter(outcome.failed.values()))
            log.warning(
                "relay: %d of %d rows not published (%s)", len(outcome.failed), len(rows), sample
            )
        if len(row_faults) < len(outcome.failed):
            await asyncio.sleep(BROKER_FAILURE_PAUSE)
