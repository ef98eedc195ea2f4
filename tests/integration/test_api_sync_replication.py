"""API writes on a primary whose synchronous standby is gone (issue 12).

A private primary with ``synchronous_standby_names`` naming a standby that is not
running: every commit waits for it. PostgreSQL does not apply ``statement_timeout`` to
that wait (it disables the timeout before committing), so the API's write waits until a
standby confirms or something cancels the wait. A cancelled wait (``pg_cancel_backend``)
returns from COMMIT with a WARNING: the transaction is committed on the primary but not
replicated. The API must not answer 201 for it: it answers 503, and a retry with the
same ``Idempotency-Key`` gets the stored result only once a commit of its own is
confirmed (here: once replication is no longer required).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from outbox.db import make_engine
from outbox.migrate import ensure_database, upgrade
from outbox.settings import Settings
from tests.integration.test_api_helpers import make_user, post_question, running
from tests.integration.test_feed_support import poll
from tests.support.private_pg import PrivatePostgres


@pytest.fixture
def primary() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def primary_db(primary: PrivatePostgres) -> Iterator[Engine]:
    url = primary.url("qa")
    ensure_database(url)
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
async def client(
    settings: Settings, primary: PrivatePostgres, primary_db: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    on_primary = Settings(**{**settings.model_dump(), "database_url": primary.url("qa")})
    async with running(on_primary) as c:
        yield c


def require_standby(db: Engine, names: str) -> None:
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if names:
            conn.execute(text(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'"))
        else:
            conn.execute(text("ALTER SYSTEM RESET synchronous_standby_names"))
        conn.execute(text("SELECT pg_reload_conf()"))


def waiting_for_standby(db: Engine) -> list[int]:
    """Backends of the API whose COMMIT waits for the synchronous standby."""
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = 'qa-api' AND wait_event = 'SyncRep'"
                )
            ).scalars()
        )


def answers_of(db: Engine, question_id: str) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text("SELECT id FROM qa.answers WHERE question_id = :q"), {"q": question_id}
            ).scalars()
        )


async def test_cancelled_wait_for_the_standby_is_a_503_not_a_201(
    client: httpx.AsyncClient, primary_db: Engine
) -> None:
    user = make_user(primary_db)
    question = await post_question(client, user)
    headers = {**user.headers, "Idempotency-Key": f"sync-{uuid.uuid4()}"}

    async def post_answer() -> httpx.Response:
        return await client.post(
            f"/questions/{question['id']}/answers", json={"body": "42"}, headers=headers
        )

    async def cancelled_wait() -> httpx.Response:
        """Post, see the commit wait for the standby, cancel that wait: the response."""
        pending = asyncio.create_task(post_answer())
        pids = await poll("a commit waiting for the standby", lambda: waiting_for_standby(
            primary_db
        ))  # fmt: skip
        assert not pending.done()  # no answer while the standby has not confirmed
        with primary_db.connect() as conn:
            conn.execute(text("SELECT pg_cancel_backend(:p)"), {"p": pids[0]})
        return await asyncio.wait_for(pending, 30)

    require_standby(primary_db, "ghost")  # a standby that is not running
    try:
        response = await cancelled_wait()
        # Committed on the primary, never replicated: not a 201.
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert len(answers_of(primary_db, question["id"])) == 1
        # The retry finds the stored result but answers it only once a commit of its own
        # is replicated: still not, so still no 201.
        again = await cancelled_wait()
        assert again.status_code == 503, again.text
    finally:
        require_standby(primary_db, "")

    # Without a synchronous standby required, the retry gets the stored result.
    retried = await post_answer()
    assert retried.status_code == 201, retried.text
    assert answers_of(primary_db, question["id"]) == [uuid.UUID(retried.json()["id"])]
