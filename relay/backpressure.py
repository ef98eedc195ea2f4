"""Broker backpressure: while RabbitMQ blocks publishers, the relay does not claim.

A memory or disk alarm makes RabbitMQ send ``connection.blocked`` and stop reading from
publishing connections. Publishing into such a connection only fills socket buffers and
times out, so the relay checks before every claim: while the connection is blocked it
claims nothing (no row gets an attempt or a backoff, no transaction is opened), waits
for ``connection.unblocked`` (re-checking the current connection every
:data:`CHECK_SECONDS`, which also follows a reconnect), sets ``qa_relay_broker_blocked``
and logs one line when the block starts and one when it ends. A batch already in flight
when the alarm went off settles by its publish timeout like any stalled link (rows left
untouched, published again later: at least once).

aiormq tracks the state (its ``Connection.ready()`` waits for both "connected" and
"unblocked") but exposes no flag; a connected connection whose ``ready()`` does not
complete at once is blocked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from relay import metrics

log = logging.getLogger("qa.relay")

CHECK_SECONDS = 1.0
_PROBE_SECONDS = 0.05


def _underlay(connection: AbstractRobustConnection) -> Any | None:
    transport = getattr(connection, "transport", None)
    return getattr(transport, "connection", None)


async def is_blocked(connection: AbstractRobustConnection, wait: float = _PROBE_SECONDS) -> bool:
    """True while the broker blocks this (connected) connection's publishers.

    A disconnected link is not "blocked": the publisher's readiness check handles it.
    """
    amqp = _underlay(connection)
    if amqp is None or not amqp.connected.is_set():
        return False
    try:
        async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancellation
            await amqp.ready()
    except TimeoutError:
        return bool(amqp.connected.is_set())
    return False


async def wait_while_blocked(connection: AbstractRobustConnection) -> None:
    """Return at once when not blocked; otherwise wait (logging twice) until unblocked."""
    if not await is_blocked(connection):
        return
    metrics.BROKER_BLOCKED.set(1)
    log.warning("relay: the broker blocks publishers (resource alarm); not claiming until it lifts")
    try:
        while await is_blocked(connection, wait=CHECK_SECONDS):
            pass  # each round waited up to CHECK_SECONDS for connection.unblocked
    finally:
        metrics.BROKER_BLOCKED.set(0)
    log.warning("relay: the broker unblocked publishers; claiming again")
