"""A deliberately BROKEN relay, for the chaos suite's negative control only.

It does everything right except one thing: it reads the outbox with an ``id > last_id``
high-water mark. Outbox ids are taken when a row is inserted, not when its transaction
commits, so a slow transaction that commits a low id after higher ids were published is
skipped forever. The chaos checker must report those events as lost; if it does not,
the checker is blind and its clean reports prove nothing.

Run as ``python -m tests.chaos.broken_relay`` with the same ``QA_*`` environment as
``qa-relay``; it serves ``/metrics`` on ``QA_RELAY_METRICS_PORT`` once connected so the
chaos harness sees it as ready like the real one.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import psycopg
from prometheus_client import start_http_server

from outbox.db import libpq_dsn
from outbox.headers import from_jsonable
from outbox.runtime import run, setup_logging
from outbox.settings import Settings

log = logging.getLogger("chaos.broken_relay")


async def serve(settings: Settings) -> None:
    amqp = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    db = await psycopg.AsyncConnection.connect(libpq_dsn(settings.database_url), autocommit=True)
    if settings.relay_metrics_port:
        start_http_server(settings.relay_metrics_port)
    log.info("broken relay: started")
    last_id = 0
    async with amqp, db:
        while True:
            cur = await db.execute(
                "SELECT id, event_id, event_type, exchange, routing_key, body, headers "
                "FROM qa.outbox WHERE id > %s ORDER BY id LIMIT 200",  # THE BUG
                (last_id,),
            )
            rows = await cur.fetchall()
            if not rows:
                await asyncio.sleep(0.05)
                continue
            for _id, event_id, event_type, exchange_name, routing_key, body, headers in rows:
                exchange = await channel.get_exchange(exchange_name, ensure=False)
                await exchange.publish(
                    aio_pika.Message(
                        bytes(body),
                        message_id=str(event_id),
                        type=event_type,
                        content_type="application/json",
                        headers=from_jsonable(headers) if headers else None,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                    mandatory=True,
                )
            ids = [row[0] for row in rows]
            await db.execute("UPDATE qa.outbox SET published_at = now() WHERE id = ANY(%s)", (ids,))
            last_id = max(ids)


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    raise SystemExit(run(lambda: serve(settings), "broken-relay"))


if __name__ == "__main__":
    main()
