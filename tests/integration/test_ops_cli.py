"""`qa-ops db`, `tokens` and `outbox status`, run as the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from click.testing import Result
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from ops import cli
from outbox.db import make_engine
from outbox.tokens import hash_token
from tests.conftest import PG_ADMIN_URL, _drop_database

QA_OPS = str(Path(sys.executable).parent / "qa-ops")


def qa_ops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QA_OPS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_db_upgrade_creates_a_missing_database_and_is_idempotent() -> None:
    name = f"qa_ops_{uuid.uuid4().hex[:10]}"
    url = f"{PG_ADMIN_URL}/{name}"
    try:
        first = qa_ops("db", "upgrade", env={"QA_DATABASE_URL": url})
        assert first.returncode == 0, first.stderr
        assert "created database" in first.stdout
        second = qa_ops("db", "upgrade", env={"QA_DATABASE_URL": url})
        assert second.returncode == 0, second.stderr
        assert "created database" not in second.stdout
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT to_regclass('qa.outbox')")) is not None
            assert conn.scalar(text("SELECT to_regclass('feed.questions')")) is not None
        engine.dispose()
    finally:
        _drop_database(name)


def test_tokens_create_prints_a_token_stored_only_as_a_hash(db: Engine) -> None:
    user = f"ops-{uuid.uuid4().hex[:8]}"
    result = qa_ops("tokens", "create", "--user", user)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("qa_") and len(token) > 30
    with db.connect() as conn:
        stored = (
            conn.execute(
                text("SELECT token_hash FROM qa.api_tokens WHERE user_name = :u"), {"u": user}
            )
            .scalars()
            .all()
        )
    assert stored == [hash_token(token)]


def test_tokens_create_without_user_is_a_usage_error() -> None:
    assert qa_ops("tokens", "create").returncode == 2


def test_outbox_status_reports_pending_failing_and_oldest(db: Engine) -> None:
    key = f"status.{uuid.uuid4().hex[:8]}"
    with db.begin() as conn:
        base = qa_status()
        conn.execute(
            text(
                "INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id,"
                " routing_key, body, created_at, attempts, last_error, next_attempt_at)"
                " VALUES (gen_random_uuid(), :k, 'test', '1', :k, '\\x7b7d',"
                "         now() - interval '90 seconds', 3, 'NO_ROUTE', now() + interval '1 hour')"
            ),
            {"k": key},
        )
    try:
        after = qa_status()
        assert after["pending"] == base["pending"] + 1
        assert after["failing"] == base["failing"] + 1
        assert after["oldest_pending_age_seconds"] >= 90
        assert any(
            r["event_type"] == key and r["last_error"] == "NO_ROUTE" for r in after["failing_rows"]
        )
        human = qa_ops("outbox", "status")
        assert human.returncode == 0 and "pending" in human.stdout
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM qa.outbox WHERE event_type = :k"), {"k": key})


def qa_status() -> dict[str, object]:
    result = qa_ops("outbox", "status", "--json", "--failing-limit", "1000")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_unreachable_database_exits_1_with_one_line_reason() -> None:
    result = qa_ops(
        "outbox", "status", env={"QA_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "database unavailable" in result.stderr


def ops(*args: str) -> Result:
    """qa-ops in-process (the console-script tests above cover the real entry point)."""
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "80"})


def test_tokens_create_refuses_user_names_that_are_not_slugs() -> None:
    for bad in ("alice smith", "bob\nroot", "Ädmin", "-x", "a_b", "a--b", "a" * 65, ""):
        result = ops("tokens", "create", "--user", bad)
        assert result.exit_code == 2, bad
        assert "slugs" in result.stderr, result.stderr


def test_tokens_create_refuses_an_unknown_role() -> None:
    assert ops("tokens", "create", "--user", "x", "--role", "root").exit_code == 2


def test_tokens_list_and_revoke(db: Engine) -> None:
    user = f"lst-{uuid.uuid4().hex[:8]}"
    writer = ops("tokens", "create", "--user", user).stdout.strip()
    operator = ops("tokens", "create", "--user", user, "--role", "operator").stdout.strip()
    listed = ops("tokens", "list", "--user", user, "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["user_name"], r["role"]) for r in rows] == [(user, "writer"), (user, "operator")]
    assert writer not in listed.stdout and operator not in listed.stdout  # never the secret
    revoked = ops("tokens", "revoke", str(rows[0]["id"]))
    assert revoked.exit_code == 0 and "revoked token" in revoked.stdout
    again = ops("tokens", "revoke", str(rows[0]["id"]))
    assert again.exit_code == 0 and "already revoked" in again.stdout
    after = json.loads(ops("tokens", "list", "--user", user, "--json").stdout)
    assert [r["role"] for r in after] == ["operator"]
    with_revoked = json.loads(ops("tokens", "list", "--user", user, "--revoked", "--json").stdout)
    assert with_revoked[0]["revoked_at"] is not None
    table = ops("tokens", "list", "--user", user)
    assert table.exit_code == 0 and user in table.stdout
    assert ops("tokens", "revoke", "999999999").exit_code == 1
