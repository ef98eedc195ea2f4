"""qa-ops output that fits: tables at 80 columns, nothing cut silently, plain flags in help."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from ops import cli
from ops.dlq_render import show_letter, summary_table
from ops.tables import fitted

ROW = {
    "id": 12345,
    "status": "dead",
    "dead_lettered_at": datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    "event_type": "question.created",
    "error_class": "SchemaViolation",
    "disposition": "permanent",
    "attempts": 1,
    "failed_queue": "feed.events",
    "message_id": "0b6f4c55-5b7e-4a57-9d0f-6f8f1e0d2a11",
}


def render(renderable: object, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def test_dlq_list_at_80_columns_keeps_whole_headers_and_names_what_it_left_out() -> None:
    text = render(summary_table([ROW], "dead letters", width=80))
    assert all(len(line) <= 80 for line in text.splitlines())
    for header in ("id", "error_class", "event_type", "dead_lettered_at"):
        assert f" {header} " in text
    assert "SchemaViolation" in text and "question.created" in text
    assert "not shown at 80 columns" in text and "message_id" in text


def test_a_wide_terminal_shows_every_column() -> None:
    text = render(summary_table([ROW], "dead letters", width=200), width=200)
    assert ROW["message_id"] in text and "not shown" not in text


def test_long_values_fold_instead_of_being_cut() -> None:
    long = "x" * 150 + "END"
    text = render(fitted("t", ("id", "note"), [["1", long]], 80))
    assert "END" in text and "…" not in text


def test_dlq_show_at_80_columns_cuts_nothing_silently() -> None:
    tb = "Traceback (most recent call last):\n" + '  File "/a/consumers/feed.py", line 1\n' * 40
    tb += "ValueError: the end of the traceback"
    letter = {
        "id": 1,
        "status": "dead",
        "status_changed_at": None,
        "message_id": "m",
        "event_type": "t",
        "routing_key": "t",
        "failed_queue": "feed.events",
        "disposition": "permanent",
        "error_class": "ValueError",
        "error_message": "m" * 300 + "MSG-END",
        "attempts": 1,
        "first_failed_at": None,
        "dead_lettered_at": datetime.now(UTC),
        "archived_at": datetime.now(UTC),
        "body": b'{"text": "' + b"b" * 300 + b'BODY-END"}',
        "headers": {"x-traceback": tb, "tenant": "t" * 200 + "HDR-END"},
        "properties": {"message_id": "m"},
        "traceback": tb,
    }
    out = io.StringIO()
    show_letter(Console(file=out, width=80, color_system=None), letter, [])
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    squashed = text.replace("│", "").replace("\n", "").replace(" ", "")
    for end in ("MSG-END", "BODY-END", "HDR-END", "theendofthetraceback"):
        assert end in squashed, end
    assert f"({len(tb)} characters: the traceback panel below)" in text


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(group, "commands"):  # a group (Typer vendors its own click)
        for name, sub in group.commands.items():
            found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _commands(typer.main.get_command(cli.app)))
def test_help_shows_plain_flags_and_fits_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
