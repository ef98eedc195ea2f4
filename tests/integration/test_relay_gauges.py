"""The leader's outbox figures: pending rows, oldest age, rows the broker refused."""

from __future__ import annotations

import psycopg
from sqlalchemy import Engine, text

from outbox.db import libpq_dsn
from outbox.settings import Settings
from relay import store
from tests.integration.test_relay_support import insert_rows, row_params


async def test_backlog_counts_failing_rows_separately(settings: Settings, db: Engine) -> None:
    async with await psycopg.AsyncConnection.connect(
        libpq_dsn(settings.database_url), autocommit=True
    ) as conn:
        pending0, _, failing0 = await store.backlog(conn)
        rows = insert_rows(db, [row_params("test.gauge") for _ in range(3)])
        with db.begin() as sync:
            sync.execute(
                text("UPDATE qa.outbox SET attempts = 2 WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in rows[:2]]},
            )
        pending, age, failing = await store.backlog(conn)
        assert (pending - pending0, failing - failing0) == (3, 2)
        assert age >= 0
        with db.begin() as sync:
            sync.execute(
                text("UPDATE qa.outbox SET published_at = now() WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in rows]},
            )
        assert (await store.backlog(conn))[0::2] == (pending0, failing0)
