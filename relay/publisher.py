"""Publishing a claimed batch on ONE confirming channel, many confirms in flight.

Every publish of a batch is started at once (in id order, so the broker receives them
in that order on this channel) and their confirms are awaited together, bounded by the
publish timeout. A row counts as published only on a positive confirm without a
return; a nack, a return (unroutable), a timeout or a channel/connection error all
count as "not published".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection

from outbox.headers import from_jsonable
from outbox.topology import EVENTS_EXCHANGE, declare_exchange
from relay.store import PendingRow

log = logging.getLogger("qa.relay.publisher")


@dataclass
class BatchOutcome:
    """Which rows the broker confirmed, and why the others were not published."""

    published: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    # reason label per failed row (nack, unroutable, timeout, channel, exchange): metrics.
    reasons: dict[int, str] = field(default_factory=dict)
    # Rows left untouched for a later batch (their message id was already in flight).
    deferred: list[int] = field(default_factory=list)

    def fail(self, row_id: int, reason: str, error: str) -> None:
        self.failed[row_id] = f"{reason}: {error}"
        self.reasons[row_id] = reason


def build_message(row: PendingRow) -> aio_pika.Message:
    """The AMQP message for a row: the stored body bytes untouched, envelope id as id."""
    return aio_pika.Message(
        row.body,
        message_id=str(row.event_id),
        type=row.event_type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=row.created_at,
        headers=from_jsonable(row.headers) if row.headers else None,
    )


def _classify(exc: BaseException) -> tuple[str, str]:
    # PublishError subclasses DeliveryError: test it first.
    if isinstance(exc, aiormq.exceptions.PublishError):
        return "unroutable", "returned by the broker as unroutable (no matching binding)"
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return "nack", "negatively confirmed by the broker"
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return "timeout", "no confirm within the publish timeout"
    if isinstance(exc, TypeError | ValueError):  # pamqp/aiormq refused to encode the row
        return "invalid", f"cannot encode the message: {exc}"
    # Never str() arbitrary connection errors: they may carry the broker URL.
    return "channel", type(exc).__name__


class Publisher:
    """Owns the relay's confirming channel on a robust connection."""

    def __init__(self, connection: AbstractRobustConnection, publish_timeout: float) -> None:
        self._connection = connection
        self._timeout = publish_timeout
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        # aiormq matches a returned message to its publish by message_id, so two
        # publishes with one id in flight could swap outcomes (a returned row marked
        # published). A second row with an id in flight waits for a later batch.
        self._in_flight_ids: set[str] = set()

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("Publisher.start() was not called")
        return self._channel

    async def start(self) -> None:
        """Open the confirming channel and declare ``qa.events`` (nothing else)."""
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchanges = {
            EVENTS_EXCHANGE: await declare_exchange(self._channel),
            "": self._channel.default_exchange,
        }

    async def ready(self, within: float) -> None:
        """Wait until the (robust) channel is usable; raises TimeoutError otherwise."""
        channel = self.channel
        await asyncio.wait_for(channel.ready(), within)

    async def _exchange(self, name: str) -> AbstractExchange | None:
        """The exchange named by a row; an unknown name is checked once (passively) on a
        throwaway channel, so a missing exchange never closes the publishing channel."""
        known = self._exchanges.get(name)
        if known is not None:
            return known
        probe = await self._connection.channel(publisher_confirms=False)
        try:
            await probe.declare_exchange(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        finally:
            if not probe.is_closed:
                await probe.close()
        exchange = await self.channel.get_exchange(name, ensure=False)
        self._exchanges[name] = exchange
        return exchange

    def _settled(self, message_id: str, task: asyncio.Future[object]) -> None:
        self._in_flight_ids.discard(message_id)
        # The outcome is read in settle(); an abandoned batch must not log "never retrieved".
        if not task.cancelled():
            task.exception()

    async def begin(self, rows: list[PendingRow]) -> InFlight:
        """Start publishing ``rows`` in id order; confirms are awaited by ``settle()``."""
        outcome = BatchOutcome()
        jobs: list[tuple[int, asyncio.Task[object]]] = []
        for row in rows:
            message_id = str(row.event_id)
            if message_id in self._in_flight_ids:
                outcome.deferred.append(row.id)
                continue
            try:
                exchange = await self._exchange(row.exchange)
            except Exception as exc:  # broker trouble while probing: retry the row later
                outcome.fail(row.id, *_classify(exc))
                continue
            if exchange is None:
                outcome.fail(row.id, "exchange", f"exchange {row.exchange!r} does not exist")
                continue
            try:
                message = build_message(row)
            except Exception as exc:  # hostile row (e.g. headers not a table): its own failure
                outcome.fail(row.id, "invalid", f"cannot build the message: {exc!r}")
                continue
            coro = exchange.publish(message, row.routing_key, mandatory=True)
            task = asyncio.ensure_future(coro)
            self._in_flight_ids.add(message_id)
            task.add_done_callback(partial(self._settled, message_id))
            jobs.append((row.id, task))
        return InFlight(jobs, outcome, asyncio.get_running_loop().time() + self._timeout)

    async def publish(self, rows: list[PendingRow]) -> BatchOutcome:
        """Publish ``rows`` with all confirms in flight; never raises for broker trouble."""
        return await (await self.begin(rows)).settle()


class InFlight:
    """A batch whose publishes are under way on the channel."""

    def __init__(
        self, jobs: list[tuple[int, asyncio.Task[object]]], outcome: BatchOutcome, deadline: float
    ) -> None:
        self._jobs = jobs
        self._outcome = outcome
        self._deadline = deadline

    def cancel(self) -> None:
        """Abandon every publish not settled yet (its row stays unpublished)."""
        for _, task in self._jobs:
            if not task.done():
                task.cancel()

    async def settle(self) -> BatchOutcome:
        """Wait for every confirm until the batch's deadline; sort rows into the outcome."""
        outcome = self._outcome
        if not self._jobs:
            return outcome
        tasks = [task for _, task in self._jobs]
        remaining = max(0.0, self._deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait(tasks, timeout=remaining)
        finally:
            # Timeout, or our own cancellation (stop, lost leadership): no orphan publishes.
            self.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for row_id, task in self._jobs:
            error = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if error is None:
                outcome.published.append(row_id)
            else:
                outcome.fail(row_id, *_classify(error))
        return outcome
