"""`qa-ops dlq` run as the real console script against the session database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from ops import cli
from outbox.headers import from_jsonable, to_jsonable
from outbox.models import DeadLetter, DeadLetterAudit, OutboxRow

QA_OPS = str(Path(sys.executable).parent / "qa-ops")
# Each subprocess pays the CLI's import time; filter and usage matrices run in-process
# through the same Typer app, the main paths run as the real console script.
RUNNER = CliRunner()


def in_process(*args: str, input: str | None = None) -> Result:
    return RUNNER.invoke(cli.app, ["dlq", *args], input=input)


def qa_ops(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QA_OPS, "dlq", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def add_letter(db: Engine, event_type: str, **overrides: Any) -> int:
    """A dead letter as the archiver stores it."""
    message_id = overrides.pop("message_id", str(uuid.uuid4()))
    headers = {
        "x-error-class": "SchemaViolation",
        "x-attempts": 1,
        "x-dead-letter-id": str(uuid.uuid4()),
        "x-failed-queue": "feed.events",
        "x-original-routing-key": event_type,
        "tenant": "t-1",
        "raw": b"\x00\xff",
    }
    values: dict[str, Any] = {
        "dedup_key": headers["x-dead-letter-id"],
        "message_id": message_id,
        "event_type": event_type,
        "routing_key": event_type,
        "failed_queue": "feed.events",
        "subscriber": "feed",
        "body": json.dumps({"id": message_id, "type": event_type}).encode(),
        "properties": {"message_id": message_id, "type": event_type},
        "headers": to_jsonable(headers),
        "error_class": "SchemaViolation",
        "error_message": "data.grade: Input should be less than or equal to 12",
        "traceback": "Traceback (most recent call last): ...",
        "disposition": "permanent",
        "attempts": 1,
        "first_failed_at": datetime.now(UTC),
        "dead_lettered_at": datetime.now(UTC),
    }
    values.update(overrides)
    with db.begin() as conn:
        return int(conn.scalar(insert(DeadLetter).values(values).returning(DeadLetter.id)))


def status_of(db: Engine, letter_id: int) -> str:
    with db.connect() as conn:
        return str(conn.scalar(select(DeadLetter.status).where(DeadLetter.id == letter_id)))


def outbox_rows(db: Engine, letter_id: int) -> list[dict[str, Any]]:
    query = select(OutboxRow.__table__).where(
        OutboxRow.aggregate_type == "replay", OutboxRow.aggregate_id == str(letter_id)
    )
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def audit_rows(db: Engine, letter_id: int) -> list[dict[str, Any]]:
    query = select(DeadLetterAudit.__table__).where(DeadLetterAudit.dead_letter_id == letter_id)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(DeadLetterAudit.id)).mappings()]


@pytest.fixture
def kind() -> str:
    """A unique event type per test, so filters only see this test's letters."""
    return f"test.{uuid.uuid4().hex[:12]}"


def test_list_filters_and_json(db: Engine, kind: str) -> None:
    old = add_letter(db, kind, dead_lettered_at=datetime.now(UTC) - timedelta(days=2))
    timeout = add_letter(db, kind, error_class="TimeoutError", disposition="exhausted")
    gone = add_letter(db, kind, status="discarded")

    listed = qa_ops("list", "--type", kind, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [timeout, old]

    every = json.loads(in_process("list", "--type", kind, "--status", "all", "--json").output)
    assert {r["id"] for r in every} == {old, timeout, gone}
    by_class = json.loads(
        in_process("list", "--type", kind, "--error-class", "TimeoutError", "--json").stdout
    )
    assert [r["id"] for r in by_class] == [timeout]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = json.loads(in_process("list", "--type", kind, "--since", since, "--json").output)
    assert [r["id"] for r in recent] == [timeout]
    limited = json.loads(in_process("list", "--type", kind, "--limit", "1", "--json").output)
    assert [r["id"] for r in limited] == [timeout]

    table = qa_ops("list", "--type", kind)
    assert table.returncode == 0 and str(timeout) in table.stdout and "TimeoutError" in table.stdout

    assert in_process("list", "--status", "bogus").exit_code == 2
    assert in_process("list", "--since", "yesterday").exit_code == 2


def test_show_prints_payload_headers_error_and_escapes_hostile_text(db: Engine, kind: str) -> None:
    hostile = add_letter(
        db,
        kind,
        body=b"\x1b[2J\x1b]0;pwned\x07 not json \xff",
        error_message="bad \x1b[31m thing",
    )
    shown = qa_ops("show", str(hostile))
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b[2J" in shown.stdout
    assert "SchemaViolation" in shown.stdout and "tenant" in shown.stdout
    assert "Traceback" in shown.stdout

    clean = add_letter(db, kind)
    data = json.loads(qa_ops("show", str(clean), "--json").stdout)
    assert data["id"] == clean and data["status"] == "dead"
    assert data["payload"]["type"] == kind
    assert from_jsonable(data["headers"])["raw"] == b"\x00\xff"
    assert data["error_class"] == "SchemaViolation" and data["attempts"] == 1
    assert data["history"] == []

    missing = qa_ops("show", "999999999")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert in_process("show", "abc").exit_code == 2


def test_replay_dry_run_changes_nothing(db: Engine, kind: str) -> None:
    letter = add_letter(db, kind)
    result = qa_ops("replay", str(letter), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["outcome"] == "would replay to queue feed.events"
    assert status_of(db, letter) == "dead"
    assert outbox_rows(db, letter) == [] and audit_rows(db, letter) == []


def test_replay_goes_through_the_outbox_to_the_failed_queue_once(db: Engine, kind: str) -> None:
    message_id = str(uuid.uuid4())
    letter = add_letter(db, kind, message_id=message_id)

    first = qa_ops("replay", str(letter), "--yes", "--actor", "alice", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)[0]["outcome"] == "replayed"
    assert status_of(db, letter) == "replayed"
    (row,) = outbox_rows(db, letter)
    assert (row["exchange"], row["routing_key"]) == ("", "feed.events")
    assert str(row["event_id"]) == message_id and row["event_type"] == kind
    with db.connect() as conn:
        stored = conn.scalar(select(DeadLetter.body).where(DeadLetter.id == letter))
    assert row["body"] == stored
    headers = row["headers"]
    assert "x-error-class" not in headers and "x-attempts" not in headers
    assert "x-dead-letter-id" not in headers
    assert headers["x-replayed-from"] == letter and headers["tenant"] == "t-1"
    assert headers["x-history"][-1]["error_class"] == "SchemaViolation"

    again = qa_ops("replay", str(letter), "--yes", "--actor", "bob", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["outcome"] == "already replayed"
    assert len(outbox_rows(db, letter)) == 1

    history = json.loads(qa_ops("show", str(letter), "--json").stdout)["history"]
    assert [(h["actor"], h["action"]) for h in history] == [("alice", "replay"), ("bob", "replay")]
    assert "outbox row" in history[0]["outcome"] and "already" in history[1]["outcome"]
    shown = qa_ops("show", str(letter)).stdout
    assert "alice" in shown and "bob" in shown


def test_replay_asks_for_confirmation(db: Engine, kind: str) -> None:
    letter = add_letter(db, kind)
    declined = in_process("replay", str(letter), input="n\n")
    assert declined.exit_code == 1
    assert status_of(db, letter) == "dead" and outbox_rows(db, letter) == []
    accepted = qa_ops("replay", str(letter), stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert status_of(db, letter) == "replayed"


def test_replay_by_filter_replays_every_matching_dead_letter(db: Engine, kind: str) -> None:
    letters = [add_letter(db, kind) for _ in range(25)]
    skipped = add_letter(db, kind, error_class="Other")
    result = qa_ops("replay", "--type", kind, "--error-class", "SchemaViolation", "--yes")
    assert result.returncode == 0, result.stderr
    assert all(status_of(db, i) == "replayed" for i in letters)
    assert all(len(outbox_rows(db, i)) == 1 for i in letters)
    assert status_of(db, skipped) == "dead"


def test_replay_usage_errors(db: Engine, kind: str) -> None:
    letter = add_letter(db, kind)
    assert qa_ops("replay").returncode == 2
    assert in_process("replay", str(letter), "--all", "--yes").exit_code == 2
    assert status_of(db, letter) == "dead"
    missing = in_process("replay", "999999999", "--yes")
    assert missing.exit_code == 1 and "not found" in missing.output


def test_discard_requires_a_reason_and_is_audited(db: Engine, kind: str) -> None:
    letter = add_letter(db, kind)
    assert qa_ops("discard", str(letter)).returncode == 2
    assert in_process("discard", str(letter), "--reason", "  ").exit_code == 2
    assert status_of(db, letter) == "dead"

    done = qa_ops("discard", str(letter), "--reason", "test data", "--actor", "carol")
    assert done.returncode == 0, done.stderr
    assert status_of(db, letter) == "discarded"
    (audit,) = audit_rows(db, letter)
    assert (audit["action"], audit["actor"], audit["reason"]) == ("discard", "carol", "test data")

    refused = qa_ops("replay", str(letter), "--yes")
    assert refused.returncode == 1 and "already discarded" in refused.stdout
    assert outbox_rows(db, letter) == []
    assert in_process("discard", "999999999", "--reason", "x").exit_code == 1


def test_database_down_exits_1(kind: str) -> None:
    down = {"QA_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/qa"}
    result = qa_ops("list", env=down)
    assert result.returncode == 1 and "database unavailable" in result.stderr
