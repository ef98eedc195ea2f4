"""How ``qa-ops dlq`` shows dead letters: Rich for people, plain JSON for scripts.

Everything shown comes from messages that may be hostile: text is rendered without
markup and with control characters escaped, so a payload cannot drive the terminal.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ops.tables import fitted
from outbox.deadletters import ActionResult
from outbox.topology import H_TRACEBACK

BODY_DISPLAY_LIMIT = 8000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe(value: object) -> str:
    """Text with control and bidi-override characters shown as escapes."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], "" if value is None else str(value))


def plain(value: Any) -> Any:
    """A JSON-ready copy: datetimes as ISO 8601."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _payload(body: bytes) -> tuple[Any, str | None]:
    """(parsed JSON or None, body as text or None if not UTF-8)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    try:
        return json.loads(text), text
    except ValueError:
        return None, text


def letter_json(letter: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """``dlq show --json``: every column, the body three ways, and the audit trail."""
    body: bytes = letter["body"]
    parsed, text = _payload(body)
    out = plain({k: v for k, v in letter.items() if k != "body"})
    out["body_base64"] = base64.b64encode(body).decode("ascii")
    out["body_text"] = text
    out["payload"] = parsed
    out["history"] = plain(history)
    return dict(out)


def summary_table(rows: list[dict[str, Any]], title: str, width: int = 200) -> Table:
    headers = (
        "id",
        "error_class",
        "event_type",
        "dead_lettered_at",
        "subscriber",
        "status",
        "attempts",
        "disposition",
        "failed_queue",
        "message_id",
    )
    cells: list[list[str | Text]] = []
    for r in rows:
        when = r["dead_lettered_at"]
        cells.append(
            [
                str(r["id"]),
                Text(safe(r["error_class"])),
                Text(safe(r["event_type"] or "-")),
                when.strftime("%Y-%m-%d %H:%M:%S") if when else "-",
                Text(safe(r.get("subscriber") or "-")),
                r["status"],
                str(r["attempts"]),
                Text(safe(r["disposition"])),
                Text(safe(r["failed_queue"])),
                Text(safe(r["message_id"] or "-")),
            ]
        )
    return fitted(title, headers, cells, width)


def _body_view(body: bytes) -> Any:
    parsed, text = _payload(body)
    note = ""
    if parsed is not None:
        # Folded plain text, never cropped; json.dumps escapes control characters.
        text = json.dumps(parsed, ensure_ascii=False, indent=2)
    elif text is None:
        text = body.decode("utf-8", "backslashreplace")
        note = "(not UTF-8: undecodable bytes shown as \\x escapes)\n"
    else:
        note = "(not JSON)\n"
    shown = safe(text[:BODY_DISPLAY_LIMIT])
    if len(text) > BODY_DISPLAY_LIMIT:
        shown += f"\n... ({len(text) - BODY_DISPLAY_LIMIT} more characters; use --json)"
    return Text(note, style="dim") + Text(shown)


def show_letter(console: Console, letter: dict[str, Any], history: list[dict[str, Any]]) -> None:
    facts = Table(show_header=False, box=None)
    facts.add_column("field", no_wrap=True)
    facts.add_column("value", overflow="fold")
    for name in (
        "id",
        "subscriber",
        "status",
        "status_changed_at",
        "message_id",
        "event_type",
        "routing_key",
        "failed_queue",
        "disposition",
        "error_class",
        "error_message",
        "attempts",
        "first_failed_at",
        "dead_lettered_at",
        "archived_at",
    ):
        value = letter.get(name)
        shown = value.isoformat() if isinstance(value, datetime) else value
        facts.add_row(name, Text(safe("-" if shown is None else shown)))
    console.print(Panel(facts, title=f"dead letter {letter['id']}"))
    console.print(Panel(_body_view(letter["body"]), title=f"payload ({len(letter['body'])} bytes)"))
    console.print(
        Panel(
            Group(
                _mapping(letter["headers"]),
                Text("properties", style="bold"),
                _mapping(letter["properties"]),
            ),
            title="headers",
        )
    )
    if letter["traceback"]:
        console.print(Panel(Text(safe(letter["traceback"])), title="traceback (excerpt)"))
    audit = Table(title="history")
    for name in ("at", "action", "actor", "outcome", "reason"):
        audit.add_column(name, overflow="fold")
    for h in history:
        audit.add_row(
            h["at"].isoformat(),
            h["action"],
            Text(safe(h["actor"])),
            Text(safe(h["outcome"])),
            Text(safe(h["reason"] or "")),
        )
    console.print(audit if history else Text("history: no replay or discard yet", style="dim"))


def _mapping(values: dict[str, Any] | None) -> Any:
    """Header name -> value, long values folded onto more lines (never cut). The
    traceback header is shown once, in its own panel below."""
    table = Table(show_header=False, box=None)
    table.add_column("name", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in (values or {}).items():
        if name == H_TRACEBACK and isinstance(value, str):
            shown = f"({len(value)} characters: the traceback panel below)"
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        table.add_row(Text(safe(name)), Text(safe(shown)))
    return table if values else Text("-")


def results_table(results: list[ActionResult], title: str, width: int = 200) -> Table:
    rows: list[list[str | Text]] = [
        [
            str(r.id),
            Text(r.outcome, style="" if r.ok else "red"),
            str(r.outbox_id or "-"),
            Text(safe(r.note or "")),
        ]
        for r in results
    ]
    return fitted(title, ("id", "outcome", "outbox row", "note"), rows, width)


def result_json(r: ActionResult) -> dict[str, Any]:
    return {"id": r.id, "outcome": r.outcome, "ok": r.ok, "outbox_id": r.outbox_id, "note": r.note}
