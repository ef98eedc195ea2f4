"""Idempotency keys are forgotten after their retention, and only then."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, text

from api.idempotency_retention import purge_expired
from outbox.db import make_async_engine
from outbox.settings import Settings


def _key(db: Engine, user: str, age_seconds: float) -> str:
    key = f"k-{uuid.uuid4().hex}"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO qa.idempotency_keys"
                " (user_name, key, request_hash, status_code, response, created_at)"
                " VALUES (:u, :k, 'h', 201, '{}', now() - make_interval(secs => :age))"
            ),
            {"u": user, "k": key, "age": age_seconds},
        )
    return key


def _keys(db: Engine, user: str) -> set[str]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT key FROM qa.idempotency_keys WHERE user_name = :u"), {"u": user}
        )
        return set(rows.scalars())


async def test_only_keys_past_retention_are_deleted_in_bounded_batches(
    settings: Settings, db: Engine
) -> None:
    user = f"ret-{uuid.uuid4().hex[:8]}"
    old = {_key(db, user, 7200) for _ in range(7)}
    fresh = {_key(db, user, 10) for _ in range(3)}
    engine = make_async_engine(settings.database_url, application_name="test")
    try:
        deleted = await purge_expired(engine, retention_seconds=3600, batch=2)
    finally:
        await engine.dispose()
    assert deleted >= len(old)  # other tests' old keys may go too; ours must
    assert _keys(db, user) == fresh
