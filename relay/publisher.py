"""Publishing a claimed batch on ONE confirming channel, many confirms in flight.

The whole batch is written at once (in id order, so the broker receives it in that
order on this channel; one socket write, see ``relay/frames.py``) and its confirms are
awaited together, bounded by the publish timeout. A row counts as published only on a
positive confirm without a return; a nack, a return (unroutable), a timeout or a
channel/connection error all count as "not published".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from outbox.topology import EVENTS_EXCHANGE, declare_exchange
from relay import frames
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
        self._exchanges: set[str] = set()
        # aiormq matches a returned message to its publish by message_id, so two
        # publishes with one id in flight could swap outcomes (a returned row marked
        # published). A second row with an id in flight waits for a later batch.
        self._in_flight_ids: set[str] = set()
        self._encoder: frames.Encoder | None = None

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
        await declare_exchange(self._channel)
        self._exchanges = {EVENTS_EXCHANGE, ""}
        if not frames.supported(await self._channel.get_underlay_channel()):
            raise RuntimeError("this aiormq version lacks what relay/frames.py needs")

    async def ready(self, within: float) -> None:
        """Wait until the (robust) channel is usable; raises TimeoutError otherwise."""
        channel = self.channel
        # asyncio.timeout, not wait_for: on 3.11 wait_for returns the result instead of
        # raising when a cancellation arrives just as the awaited call completes, and the
        # relay's pipeline then ran on after being cancelled (tests/integration/
        # test_relay_cancel.py caught it).
        async with asyncio.timeout(within):
            await channel.ready()

    def usable(self) -> bool:
        """True when the channel is open right now (``ready()`` would return at once)."""
        channel = self._channel
        return channel is not None and not channel.is_closed

    async def _exchange_exists(self, name: str) -> bool:
        """Whether the exchange named by a row exists; an unknown name is checked once
        (passively) on a throwaway channel, so a missing one never closes the publishing
        channel."""
        if name in self._exchanges:
            return True
        probe = await self._connection.channel(publisher_confirms=False)
        try:
            await probe.declare_exchange(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not probe.is_closed:
                await probe.close()
        self._exchanges.add(name)
        return True

    def _forget(self, message_ids: Sequence[str]) -> None:
        self._in_flight_ids.difference_update(message_ids)

    async def begin(self, rows: list[PendingRow]) -> InFlight:
        """Write ``rows`` in id order; confirms are awaited by ``settle()``."""
        outcome = BatchOutcome()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):  # not wait_for: see ready()
                channel: Any = await self.channel.get_underlay_channel()
        except Exception as exc:  # the channel is gone or not restored: nobody's fault
            for row in rows:
                outcome.fail(row.id, *_classify(exc))
            return InFlight(None, [], outcome, loop.time())
        frames.install_ordered_confirms(channel)  # a restored channel is a new object
        encoder = self._encoder
        size = frames.body_frame_size(channel)
        if encoder is None or (encoder.channel_number, encoder.max_body_frame) != (
            channel.number,
            size,
        ):  # first batch, or a channel restored after a reconnect
            encoder = self._encoder = frames.Encoder(channel.number, size)
        in_flight = self._in_flight_ids
        known = self._exchanges
        ids: list[int] = []
        messages: list[tuple[str, bytes]] = []
        for row in rows:
            message_id = row.event_id
            if message_id in in_flight:
                outcome.deferred.append(row.id)
                continue
            if row.exchange not in known:
                try:
                    exists = await self._exchange_exists(row.exchange)
                except Exception as exc:  # broker trouble while probing: retry the row later
                    outcome.fail(row.id, *_classify(exc))
                    continue
                if not exists:
                    outcome.fail(row.id, "exchange", f"exchange {row.exchange!r} does not exist")
                    continue
            try:
                encoded = encoder.message(
                    row.exchange,
                    row.routing_key,
                    row.body,
                    message_id,
                    row.event_type,
                    row.created_at,
                    row.headers,
                )
            except Exception as exc:  # hostile row (e.g. headers not a table): its own failure
                outcome.fail(row.id, "invalid", f"cannot build the message: {exc!r}")
                continue
            in_flight.add(message_id)
            ids.append(row.id)
            messages.append((message_id, encoded))
        confirms = None
        if messages:
            try:
                confirms = await frames.send(channel, messages, self._forget)
            except BaseException as exc:
                self._forget([message_id for message_id, _ in messages])
                if not isinstance(exc, Exception):
                    raise
                for row_id in ids:
                    outcome.fail(row_id, *_classify(exc))
                ids = []
        return InFlight(confirms, ids, outcome, loop.time() + self._timeout)

    async def publish(self, rows: list[PendingRow]) -> BatchOutcome:
        """Publish ``rows`` with all confirms in flight; never raises for broker trouble."""
        return await (await self.begin(rows)).settle()


class InFlight:
    """A batch whose publishes are under way on the channel."""

    def __init__(
        self,
        confirms: frames.Confirms | None,
        ids: list[int],
        outcome: BatchOutcome,
        deadline: float,
    ) -> None:
        self._confirms = confirms
        self._ids = ids  # row ids, in the order of the confirms' messages
        self._outcome = outcome
        self._deadline = deadline

    def cancel(self) -> None:
        """Abandon every publish not settled yet (its row stays unpublished)."""
        if self._confirms is not None:
            self._confirms.close()

    async def settle(self) -> BatchOutcome:
        """Wait for every confirm until the batch's deadline; sort rows into the outcome."""
        outcome = self._outcome
        if self._confirms is None:
            return outcome
        remaining = max(0.0, self._deadline - asyncio.get_running_loop().time())
        # Timeout, or our own cancellation (stop, lost leadership): an unconfirmed row is
        # not published; a late confirm for it is ignored (Confirms.close()).
        results = await self._confirms.wait(remaining)
        for row_id, error in zip(self._ids, results, strict=True):
            if error is None:
                outcome.published.append(row_id)
            else:
                outcome.fail(row_id, *_classify(error))
        return outcome
