"""``qa-relay``: settings, logging, start-up connections, then the relay until a stop signal."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import psycopg
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import start_http_server

from outbox import tracing
from outbox.amqp import connect_cluster
from outbox.runtime import connect_with_retry, run, setup_logging
from outbox.settings import Settings, redact
from relay.relay import Relay

log = logging.getLogger("qa.relay")


async def serve(settings: Settings) -> None:
    """Connect to PostgreSQL and RabbitMQ (within the start-up budget), then relay."""
    budget = settings.startup_timeout_seconds

    # Real coroutine functions, not lambdas: tenacity only awaits what it recognises
    # as a coroutine function (a lambda returning a coroutine is not retried properly).
    async def connect_broker() -> AbstractRobustConnection:
        return await connect_cluster(settings.amqp_url.get_secret_value(), name="qa-relay")

    amqp = await connect_with_retry(
        f"RabbitMQ at {redact(settings.amqp_url)}", connect_broker, budget
    )
    try:
        # The pid in application_name tells operators (and tests) which process leads.
        relay = Relay(settings, amqp, name=f"qa-relay-{os.getpid()}")

        async def connect_db() -> psycopg.AsyncConnection[Any]:
            return await relay.connect("lock", autocommit=True)

        lock_conn = await connect_with_retry(
            f"PostgreSQL at {redact(settings.database_url)}", connect_db, budget
        )
        if settings.relay_metrics_port:
            start_http_server(settings.relay_metrics_port)
        log.info(
            "relay: started (database %s, broker %s, batch %d)",
            redact(settings.database_url),
            redact(settings.amqp_url),
            settings.relay_batch_size,
        )
        await relay.run(lock_conn)
    finally:
        await amqp.close()


def main() -> None:
    """Console script ``qa-relay``."""
    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    tracing.setup("qa-relay")
    sys.exit(run(lambda: serve(settings), "qa-relay", settings.event_loop))
