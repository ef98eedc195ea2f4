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

The probe (``outbox.amqp.is_blocked``) is shared with the subscribers, which hold
failed messages while their publishing connection is blocked.
"""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractRobustConnection

from outbox.amqp import is_blocked
from relay import metrics

log = logging.getLogger("qa.relay")

CHECK_SECONDS = 1.0


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
