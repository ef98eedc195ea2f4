"""Per-process database roles get only what their process needs (migration 0002)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text

from outbox.db import make_engine
from outbox.migrate import ensure_database, upgrade
from tests.conftest import PG_ADMIN_URL, _drop_database

ROLES = ("qa_api", "qa_relay", "qa_consumer", "qa_archiver", "qa_ops", "qa_notifier")


@pytest.fixture(scope="module")
def granted_db() -> str:
    """A fresh database migrated while the service roles exist (they are cluster-wide)."""
    admin = make_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role in ROLES:
            conn.execute(
                text(
                    f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='{role}')"
                    f" THEN CREATE ROLE {role} LOGIN; END IF; END $$"
                )
            )
    admin.dispose()
    name = f"qa_grants_{uuid.uuid4().hex[:8]}"
    ensure_database(f"{PG_ADMIN_URL}/{name}")
    upgrade(f"{PG_ADMIN_URL}/{name}")
    yield name
    _drop_database(name)


def _as(role: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=5432, user=role, dbname=dbname, autocommit=True)


def _denied(conn: psycopg.Connection, sql: str) -> bool:
    try:
        conn.execute(sql)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


OUTBOX_ROW = (
    "INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id, routing_key,"
    " body) VALUES (gen_random_uuid(), 't', 'a', '1', 't', '')"
)


def test_api_writes_questions_and_outbox_but_cannot_touch_published_state(granted_db: str) -> None:
    with _as("qa_api", granted_db) as conn:
        conn.execute(OUTBOX_ROW)
        conn.execute("SELECT * FROM feed.questions LIMIT 1")
        assert _denied(conn, "UPDATE qa.outbox SET published_at = now()")
        assert _denied(conn, "UPDATE qa.questions SET author = 'mallory'")
        assert _denied(conn, "DELETE FROM qa.outbox")
        assert _denied(conn, "INSERT INTO subscribers.inbox VALUES ('x', gen_random_uuid(), 't')")
        assert _denied(conn, "INSERT INTO qa.api_tokens (user_name, token_hash) VALUES ('a','b')")


def test_relay_only_reads_marks_and_purges_the_outbox(granted_db: str) -> None:
    with _as("qa_relay", granted_db) as conn:
        conn.execute("UPDATE qa.outbox SET published_at = now() WHERE false")
        conn.execute("DELETE FROM qa.outbox WHERE false")
        assert _denied(conn, OUTBOX_ROW)
        assert _denied(conn, "SELECT * FROM qa.questions")
        assert _denied(conn, "SELECT * FROM qa.api_tokens")


def test_consumer_and_archiver_stay_in_their_tables(granted_db: str) -> None:
    with _as("qa_consumer", granted_db) as conn:
        conn.execute("INSERT INTO subscribers.inbox VALUES ('feed', gen_random_uuid(), 't')")
        assert _denied(conn, "SELECT * FROM qa.outbox")
        assert _denied(conn, "SELECT * FROM subscribers.dead_letters")
    with _as("qa_archiver", granted_db) as conn:
        conn.execute("SELECT * FROM subscribers.dead_letters")
        assert _denied(conn, "SELECT * FROM subscribers.inbox")
        assert _denied(conn, "SELECT * FROM qa.outbox")


def test_ops_can_replay_through_the_outbox(granted_db: str) -> None:
    with _as("qa_ops", granted_db) as conn:
        conn.execute(OUTBOX_ROW)
        conn.execute("UPDATE subscribers.dead_letters SET status = 'dead' WHERE false")


async def test_the_real_api_works_as_its_least_privileged_role(granted_db: str) -> None:
    from outbox.settings import Settings
    from tests.integration.test_api_helpers import make_user, question_payload, running

    owner = make_engine(f"{PG_ADMIN_URL}/{granted_db}")
    user = make_user(owner)
    role_url = f"postgresql+psycopg://qa_api@127.0.0.1:5432/{granted_db}"
    payload = question_payload()
    async with running(Settings(database_url=role_url)) as client:
        question = await client.post(
            "/questions", json=payload, headers={**user.headers, "Idempotency-Key": "k1"}
        )
        assert question.status_code == 201, question.text
        qid = question.json()["id"]
        replay = await client.post(  # a replay commits a write of its own (replication check)
            "/questions", json=payload, headers={**user.headers, "Idempotency-Key": "k1"}
        )
        assert (replay.status_code, replay.json()["id"]) == (201, qid), replay.text
        answer = await client.post(
            f"/questions/{qid}/answers", json={"body": "b"}, headers=user.headers
        )
        assert answer.status_code == 201, answer.text
        edit = await client.patch(f"/questions/{qid}", json={"grade": 3}, headers=user.headers)
        assert edit.status_code == 200, edit.text
        assert (await client.get(f"/questions/{qid}")).status_code == 200
        assert (await client.get("/feed")).status_code == 200
    with owner.connect() as conn:
        events = conn.scalar(
            text("SELECT count(*) FROM qa.outbox WHERE aggregate_id = :q"), {"q": qid}
        )
    assert events == 3
    owner.dispose()


def test_api_may_expire_idempotency_keys_but_not_tokens(granted_db: str) -> None:
    with _as("qa_api", granted_db) as conn:
        conn.execute("DELETE FROM qa.idempotency_keys WHERE false")
        assert _denied(conn, "DELETE FROM qa.api_tokens")


def test_notifier_keeps_to_its_own_schema_and_ops_manages_users(granted_db: str) -> None:
    with _as("qa_notifier", granted_db) as conn:
        conn.execute(
            "INSERT INTO notifier.users VALUES ('n', NULL, false, 1) ON CONFLICT DO NOTHING"
        )
        conn.execute("UPDATE notifier.questions SET title = 't' WHERE false")
        conn.execute("SELECT * FROM notifier.deliveries LIMIT 1")
        assert _denied(conn, "SELECT * FROM qa.users")  # never the write tables
        assert _denied(conn, "SELECT * FROM qa.questions")
        assert _denied(conn, "SELECT * FROM qa.outbox")
        assert _denied(conn, "SELECT * FROM feed.questions")
    with _as("qa_ops", granted_db) as conn:
        conn.execute("UPDATE qa.users SET opted_out = true WHERE false")
        conn.execute("SELECT * FROM notifier.deliveries LIMIT 1")
        assert _denied(conn, "DELETE FROM notifier.deliveries")
