"""`qa-ops users`: each change writes the user and its user.* event in one transaction.

The commands run in-process through Typer's runner (a subprocess costs seconds on a busy
machine); one test runs the real console script.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from ops.cli import app
from outbox import users as store
from outbox.events import decode
from tests.integration.test_ops_cli import qa_ops as qa_ops_process


def qa_ops(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _name() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _events(db: Engine, name: str) -> list[dict[str, Any]]:
    """Decoded user.* events for ``name`` in outbox order."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT body, event_type, routing_key FROM qa.outbox "
                "WHERE aggregate_type = 'user' AND aggregate_id = :n ORDER BY id"
            ),
            {"n": name},
        ).all()
    out = []
    for body, event_type, routing_key in rows:
        event = decode(bytes(body))  # the same schema the subscribers decode with
        assert event.envelope.type == event_type == routing_key
        out.append({"type": event_type, **event.data.model_dump()})
    return out


def test_create_set_email_opt_out_opt_in_emit_one_event_each(db: Engine) -> None:
    name = _name()
    assert qa_ops("users", "create", name, "--email", "Ann@Example.TEST").exit_code == 0
    assert qa_ops("users", "set-email", name, "ann2@example.test").exit_code == 0
    assert qa_ops("users", "opt-out", name).exit_code == 0
    assert qa_ops("users", "opt-in", name).exit_code == 0
    events = _events(db, name)
    assert [(e["type"], e["revision"], e["email"], e["opted_out"]) for e in events] == [
        ("user.registered", 1, "Ann@example.test", False),  # domain lowercased only
        ("user.updated", 2, "ann2@example.test", False),
        ("user.updated", 3, "ann2@example.test", True),
        ("user.updated", 4, "ann2@example.test", False),
    ]
    listed = json.loads(qa_ops_process("users", "list", "--json").stdout)
    mine = [u for u in listed if u["name"] == name]
    assert len(mine) == 1
    assert (mine[0]["email"], mine[0]["opted_out"], mine[0]["revision"]) == (
        "ann2@example.test",
        False,
        4,
    )


def test_a_change_that_changes_nothing_emits_nothing(db: Engine) -> None:
    name = _name()
    assert qa_ops("users", "create", name).exit_code == 0  # no address: gets no mail
    result = qa_ops("users", "opt-in", name)
    assert result.exit_code == 0 and "no change" in result.stdout
    assert [e["type"] for e in _events(db, name)] == ["user.registered"]
    assert _events(db, name)[0]["email"] is None


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("users", "create", "Not A Slug", "--email", "a@example.test"), 2),
        (("users", "create", "x" * 65), 2),
        (("users", "create", "{name}", "--email", "not-an-address"), 2),
        (("users", "create", "{name}", "--email", "a@b@example.test"), 2),
        (("users", "create", "{name}", "--email", "ä@example.test"), 2),
        (("users", "set-email", "{name}", "a@example.test"), 1),  # unknown user
        (("users", "opt-out", "{name}"), 1),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    db: Engine, args: tuple[str, ...], code: int
) -> None:
    name = _name()
    result = qa_ops(*(a.format(name=name) for a in args))
    assert result.exit_code == code, result.output
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM qa.users WHERE name = :n"), {"n": name}) == 0
    assert _events(db, name) == []


def test_creating_an_existing_user_fails_and_emits_nothing_more(db: Engine) -> None:
    name = _name()
    assert qa_ops("users", "create", name, "--email", "a@example.test").exit_code == 0
    again = qa_ops("users", "create", name, "--email", "b@example.test")
    assert again.exit_code == 1 and "already exists" in again.output
    assert [e["email"] for e in _events(db, name)] == ["a@example.test"]


def test_user_and_event_roll_back_together(db: Engine) -> None:
    name = _name()
    with db.connect() as conn:
        store.create(conn, name, "a@example.test")
        store.change(conn, name, opted_out=True)
        conn.rollback()  # e.g. the process died before COMMIT
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM qa.users WHERE name = :n"), {"n": name}) == 0
    assert _events(db, name) == []
