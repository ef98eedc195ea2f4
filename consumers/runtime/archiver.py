"""``qa-consumer dead-letters``: archive every subscriber's ``<name>.dead`` into
``subscribers.dead_letters`` (one archiver for all, each row labelled with its subscriber).

Messages are stored in batches, one transaction per batch, and acked only after that
transaction committed; a redelivered copy is skipped by its dedup key. While the
database is unavailable nothing is acked: the batch is retried in-process with growing
delays, then handed back to the broker (nack with requeue), so a message is never
dropped and never hot-loops. The store lives in the MAIN database, next to the outbox,
so that a replay is one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from prometheus_client import Counter, start_http_server
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from consumers.runtime.archive_store import letter_row, store
from outbox import subscribers
from outbox.amqp import connect_cluster
from outbox.db import make_async_engine
from outbox.runtime import connect_with_retry
from outbox.settings import Settings, redact
from outbox.topology import declare_dead_queue
from outbox.transient import is_transient

log = logging.getLogger("qa.archiver")
Letter = tuple[str, AbstractIncomingMessage]  # (subscriber, message from <subscriber>.dead)

ARCHIVED = Counter(
    "qa_dead_letters_archived_total",
    "Dead letters stored in subscribers.dead_letters.",
    ["subscriber", "disposition"],
)
DUPLICATES = Counter(
    "qa_dead_letters_duplicates_total", "Redelivered dead letters that were already stored."
)
STORE_FAILURES = Counter(
    "qa_dead_letter_store_failures_total", "Failed attempts to store a batch.", ["kind"]
)
REQUEUED = Counter(
    "qa_dead_letters_requeued_total", "Dead letters handed back to the broker unstored."
)
_KNOWN_DISPOSITIONS = frozenset({"permanent", "exhausted", "unknown", "delivery-limit"})

BATCH_SIZE = 100
# How long one batch is retried in-process before it is handed back to the broker.
STORE_RETRY_BUDGET_SECONDS = 10.0
# Pause before requeueing a message the database refuses for good (not a hot loop).
REFUSED_BACKOFF_SECONDS = 5.0


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    STORE_FAILURES.labels(kind="transient").inc()
    log.warning(
        "storing dead letters failed (attempt %d, %s); retrying",
        state.attempt_number,
        type(exc).__name__,
    )


class Archiver:
    """Consumes the subscribers' dead-letter queues into the store. Strong references are kept to
    the queue and consumer tag so they are not garbage-collected."""

    def __init__(
        self, engine: AsyncEngine, retry_budget_seconds: float = STORE_RETRY_BUDGET_SECONDS
    ) -> None:
        self._engine = engine
        self._retry_budget = retry_budget_seconds
        self._inbox: asyncio.Queue[Letter] = asyncio.Queue()
        self._queues: dict[str, AbstractQueue] = {}
        self._consumer_tags: dict[str, str] = {}

    async def run(
        self,
        queues: Mapping[str, AbstractQueue],
        on_consuming: Callable[[], None] | None = None,
    ) -> None:
        """Consume every ``{subscriber: dead queue}`` until cancelled; ``on_consuming``
        runs once deliveries flow."""
        self._queues = dict(queues)
        for name, queue in self._queues.items():
            self._consumer_tags[name] = await queue.consume(self._receiver(name))
        if on_consuming is not None:
            on_consuming()
        try:
            while True:
                batch = [await self._inbox.get()]
                while len(batch) < BATCH_SIZE and not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                await self.archive(batch)
        finally:
            # Unsettled messages return to the queue when the channel closes.
            for name, tag in self._consumer_tags.items():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._queues[name].cancel(tag))

    def _receiver(self, subscriber: str) -> Callable[[AbstractIncomingMessage], Any]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._inbox.put((subscriber, message))

        return on_message

    async def archive(self, batch: list[Letter]) -> None:
        """Store ``batch`` and ack it, or hand it back to the broker unacked."""
        rows: list[dict[str, Any]] = []
        kept: list[AbstractIncomingMessage] = []
        for subscriber, message in batch:
            try:
                rows.append(letter_row(message, subscriber))
                kept.append(message)
            except Exception:
                log.exception("cannot build a row for dead letter %r", message.message_id)
                await self._give_back([message], pause=REFUSED_BACKOFF_SECONDS)
        if not rows:
            return
        try:
            stored = await self._store_with_retry(rows)
        except Exception as exc:
            if is_transient(exc):
                log.error("database unavailable; %d dead letters handed back", len(kept))
                await self._give_back(kept)
            elif len(kept) > 1:
                # One bad row must not block the others: store them one by one.
                for subscriber, message in batch:
                    if message in kept:
                        await self.archive([(subscriber, message)])
            else:
                STORE_FAILURES.labels(kind="refused").inc()
                log.exception("database refused dead letter %r", kept[0].message_id)
                await self._give_back(kept, pause=REFUSED_BACKOFF_SECONDS)
            return
        for subscriber, disposition in stored:
            label = disposition if disposition in _KNOWN_DISPOSITIONS else "other"
            ARCHIVED.labels(subscriber=subscriber, disposition=label).inc()
        DUPLICATES.inc(len(rows) - len(stored))
        for message in kept:
            await _settle(message, ack=True)

    async def _store_with_retry(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.1, max=3.0, jitter=0.1),
            stop=stop_after_delay(self._retry_budget),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await store(self._engine, rows)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _give_back(self, messages: list[AbstractIncomingMessage], pause: float = 0) -> None:
        if pause:
            await asyncio.sleep(pause)
        for message in messages:
            REQUEUED.inc()
            await _settle(message, ack=False)


async def _settle(message: AbstractIncomingMessage, ack: bool) -> None:
    """Ack or requeue; if the channel is gone the broker redelivers anyway (and the
    dedup key makes that harmless), so a failure here is only logged."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=True)
    except Exception as exc:
        log.warning("could not %s dead letter (%s)", "ack" if ack else "nack", type(exc).__name__)


async def run_archiver(settings: Settings) -> None:
    """Run the dead-letter archiver until cancelled (SIGTERM/SIGINT via outbox.runtime.run)."""
    server: Any = None
    engine = make_async_engine(settings.database_url, application_name="qa-dead-letters")
    try:

        async def ping() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        budget = settings.startup_timeout_seconds
        await connect_with_retry(f"database {redact(settings.database_url)}", ping, budget)

        async def connect() -> AbstractRobustConnection:
            return await connect_cluster(
                settings.amqp_url.get_secret_value(), name="qa-dead-letters"
            )

        connection = await connect_with_retry(
            f"broker {redact(settings.amqp_url)}", connect, budget
        )
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=BATCH_SIZE * 2)
            dead_queues: dict[str, AbstractQueue] = {}
            for name in subscribers.discover():
                dead_queues[name] = await declare_dead_queue(
                    connection, channel, name, settings.quorum_initial_group_size
                )

            def consuming() -> None:
                # The metrics endpoint answering is the readiness signal: start it last.
                nonlocal server
                if settings.archiver_metrics_port:
                    server, _ = start_http_server(settings.archiver_metrics_port)
                log.info(
                    "consuming %s, archiving into %s",
                    ", ".join(q.name for q in dead_queues.values()),
                    redact(settings.database_url),
                )

            archiver = Archiver(engine, STORE_RETRY_BUDGET_SECONDS)
            await archiver.run(dead_queues, consuming)
    finally:
        await engine.dispose()
        if server is not None:
            server.shutdown()
