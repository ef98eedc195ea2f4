"""The simplest peer relay (issue 13's comparator), built only for the benchmark.

One transaction per batch: claim up to ``batch`` rows with the relay's own claim query,
``asyncio.gather`` one ``exchange.publish(mandatory=True)`` per row on one confirming
channel, mark the confirmed rows, commit, repeat until nothing is pending. No pipelining,
no second connection, no leadership: what a careful engineer writes in an afternoon.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import psycopg

from outbox.headers import from_jsonable
from relay.store import CLAIM_SQL, MARK_PUBLISHED_SQL


async def drain(dsn: str, amqp_url: str, batch: int = 2000) -> int:
    """Publish every pending row; returns how many rows were marked."""
    connection = await aio_pika.connect_robust(amqp_url)
    marked = 0
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges: dict[str, Any] = {}
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            while True:
                cur = await conn.execute(CLAIM_SQL, (batch,))
                rows = await cur.fetchall()
                if not rows:
                    await conn.rollback()
                    return marked
                publishes = []
                for _id, event_id, event_type, exchange, key, body, headers, created in rows:
                    if exchange not in exchanges:
                        exchanges[exchange] = await channel.get_exchange(exchange, ensure=False)
                    message = aio_pika.Message(
                        body,
                        message_id=str(event_id),
                        type=event_type,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        timestamp=created,
                        headers=from_jsonable(headers) if headers else None,
                    )
                    publishes.append(exchanges[exchange].publish(message, key, mandatory=True))
                results = await asyncio.gather(*publishes, return_exceptions=True)
                ok = [
                    row[0]
                    for row, result in zip(rows, results, strict=True)
                    if not isinstance(result, BaseException)
                ]
                await conn.execute(MARK_PUBLISHED_SQL, (ok,))
                await conn.commit()
                marked += len(ok)
    finally:
        await connection.close()
