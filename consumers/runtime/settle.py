"""Settling a batch: publish retry / dead-letter copies with confirms, THEN ack.

The order is the whole point: a failed message is acked only after the broker confirmed
its copy (``mandatory=True`` and returns raising, so an unroutable copy counts as not
published). If the copy could not be published, the original is requeued after a short
pause instead of acked, so nothing is lost between the two and nothing hot-loops.

While the broker blocks the publishing connection (a memory or disk alarm; the consuming
connection is a separate one and goes on), copies cannot be published: the batch's
other messages are acked at once and the failed ones are *held* unacked (each keeps a
prefetch slot; none is redelivered, so none counts against the delivery limit) until
the block lifts, then settled as above, while later batches go on. RabbitMQ blocks a
connection only when it next publishes, so the first copy after the alarm goes off
still waits out its publish timeout and is requeued.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from consumers.runtime import metrics
from consumers.runtime.disposition import Outcome, classify
from consumers.runtime.failed_messages import attempts_of, dead_letter_message, retry_message
from consumers.runtime.item import logged

if TYPE_CHECKING:
    from consumers.runtime.item import Item

log = logging.getLogger("qa.consumer")

PUBLISH_TIMEOUT_SECONDS = 10.0
# Pause before requeueing messages whose copy could not be published (broker trouble):
# keeps a persistent publish failure from turning into a redelivery hot loop.
REQUEUE_PAUSE_SECONDS = 1.0
# How long each look at a blocked publishing connection waits for connection.unblocked.
BLOCKED_CHECK_SECONDS = 1.0

Blocked = Callable[[float], Awaitable[bool]]


async def _never_blocked(wait: float) -> bool:
    return False


@dataclass(frozen=True)
class Policy:
    """The retry policy: broker tier delays, and retries for unclassified errors."""

    retry_delays: Sequence[float]
    unknown_error_retries: int


class Settler:
    """Publishes copies of failed messages and acks what is safe to ack."""

    def __init__(
        self,
        subscriber: str,
        publisher: AbstractChannel,
        policy: Policy,
        blocked: Blocked | None = None,
    ) -> None:
        """``blocked(wait)``: whether the broker blocks the publisher's connection,
        waiting up to ``wait`` seconds for it to lift (``outbox.amqp.is_blocked``)."""
        self._subscriber = subscriber
        self._publisher = publisher
        self._policy = policy
        self._blocked = blocked or _never_blocked
        self._held: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> int:
        """Batches whose failed messages wait for the broker to unblock publishers."""
        return len(self._held)

    async def settle(self, items: Sequence[Item]) -> None:
        failed = [item for item in items if item.error is not None]
        if failed and await self._blocked(0.05):
            failed_ids = {id(item) for item in failed}
            # One ack per message: a "multiple" ack would cover the held ones too.
            await ack([i.message for i in items if id(i) not in failed_ids], whole_batch=False)
            log.warning(
                "%s: the broker blocks publishing (resource alarm); holding %d failed"
                " message(s) unacked until it lifts",
                self._subscriber,
                len(failed),
            )
            task = asyncio.create_task(self._settle_when_unblocked(failed))
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            return
        await self._settle_failed(items, failed, whole_batch=not self._held)

    async def close(self) -> None:
        """Stop waiting for held messages: they return to the queue with the channel."""
        for task in list(self._held):
            task.cancel()
        await asyncio.gather(*self._held, return_exceptions=True)

    async def _settle_when_unblocked(self, failed: list[Item]) -> None:
        while await self._blocked(BLOCKED_CHECK_SECONDS):
            pass  # each look waited up to BLOCKED_CHECK_SECONDS for connection.unblocked
        await self._settle_failed(failed, failed, whole_batch=False)

    async def _settle_failed(
        self, items: Sequence[Item], failed: list[Item], *, whole_batch: bool
    ) -> None:
        unpublished = await self._divert(failed) if failed else []
        keep = {id(item.message) for item in unpublished}
        to_ack = [item.message for item in items if id(item.message) not in keep]
        await ack(to_ack, whole_batch=whole_batch and not unpublished)
        if unpublished:
            metrics.DIVERT_FAILURES.labels(self._subscriber).inc(len(unpublished))
            await asyncio.sleep(REQUEUE_PAUSE_SECONDS)
            for item in unpublished:
                await _settle_quietly(item.message.nack(requeue=True))

    async def _divert(self, items: list[Item]) -> list[Item]:
        """Publish each item's copy; return the items whose copy was NOT confirmed."""
        results = await asyncio.gather(
            *(self._divert_one(item) for item in items), return_exceptions=True
        )
        unpublished = []
        retried: Counter[str] = Counter()
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                with logged(item):
                    log.error(
                        "%s: could not publish retry/dead letter for message %s: %r; requeueing",
                        self._subscriber,
                        item.message.message_id,
                        result,
                    )
                unpublished.append(item)
            elif result:
                retried[result] += 1
        for error_class, count in retried.items():
            log.info(
                "%s: %d message(s) scheduled for a delayed retry after %s",
                self._subscriber,
                count,
                error_class,
            )
        return unpublished

    async def _divert_one(self, item: Item) -> str | None:
        """Publish the copy; return the error class when it was a retry (for the summary)."""
        with logged(item):
            return await self._divert_logged(item)

    async def _divert_logged(self, item: Item) -> str | None:
        assert item.error is not None
        message = item.message
        disposition = classify(
            item.error,
            attempts_of(message),
            self._policy.retry_delays,
            self._policy.unknown_error_retries,
        )
        error_class = disposition.error_class or "unknown"
        if disposition.outcome is Outcome.RETRY_LATER:
            copy, routing_key = retry_message(self._subscriber, message, disposition, item.error)
            await self._publish(copy, routing_key)
            metrics.RETRIED.labels(self._subscriber, error_class).inc()
            return error_class
        if disposition.outcome is Outcome.DEAD_LETTER:
            copy, routing_key = dead_letter_message(
                self._subscriber, message, disposition, item.error
            )
            await self._publish(copy, routing_key)
            metrics.DEAD_LETTERED.labels(self._subscriber, error_class, str(disposition.kind)).inc()
            log.warning(
                "%s: dead-lettered message %s (%s, %s after %d attempt(s)): %s",
                self._subscriber,
                message.message_id,
                disposition.kind,
                error_class,
                disposition.attempts,
                str(item.error)[:200],
            )
        return None

    async def _publish(self, copy: aio_pika.Message, routing_key: str) -> None:
        await self._publisher.default_exchange.publish(
            copy, routing_key=routing_key, mandatory=True, timeout=PUBLISH_TIMEOUT_SECONDS
        )


async def ack(messages: Sequence[AbstractIncomingMessage], whole_batch: bool) -> None:
    """Ack ``messages``; with ``whole_batch`` one ``multiple`` ack per channel.

    A failing ack (channel gone) loses nothing: the broker redelivers, the inbox skips.
    """
    if not messages:
        return
    if not whole_batch:
        for message in messages:
            await _settle_quietly(message.ack())
        return
    newest: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        key = id(message.channel) if not is_stale(message) else 0
        if key == 0:
            continue  # its channel closed: it will be redelivered
        current = newest.get(key)
        if current is None or (message.delivery_tag or 0) > (current.delivery_tag or 0):
            newest[key] = message
    for message in newest.values():
        await _settle_quietly(message.ack(multiple=True))


def is_stale(message: AbstractIncomingMessage) -> bool:
    """True when the message's channel closed: it can no longer be acked, only redelivered."""
    try:
        return bool(message.channel.is_closed)
    except Exception:
        return True


async def _settle_quietly(settlement: Awaitable[None]) -> None:
    try:
        await settlement
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("ack/nack failed (the broker will redeliver): %r", exc)
