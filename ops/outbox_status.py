"""``qa-ops outbox status``: is the relay keeping up?"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ops.common import console, engine, print_json
from ops.tables import fitted
from outbox import stats

app = typer.Typer(help="Outbox table.", no_args_is_help=True)


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    failing_limit: int = typer.Option(10, "--failing-limit", min=0, help="Failing rows to list."),
) -> None:
    """Pending count, age of the oldest pending event, failing rows, published last minute."""
    with engine() as eng, eng.connect() as conn:
        summary: dict[str, Any] = stats.outbox_status(conn, failing_limit)
    rows = summary["failing_rows"]
    if as_json:
        print_json(summary)
        return
    table = Table(title="outbox status", show_header=False)
    table.add_row("pending", str(summary["pending"]))
    table.add_row("oldest pending age (s)", str(summary["oldest_pending_age_seconds"] or "-"))
    table.add_row("failing rows", str(summary["failing"]))
    table.add_row("published in the last minute", str(summary["published_last_minute"]))
    console.print(table)
    if rows:
        cols = ("id", "event_type", "attempts", "last_error", "next_attempt_at", "event_id")
        cells: list[list[str | Text]] = [[Text(str(r[c])) for c in cols] for r in rows]
        failing = fitted("failing rows (oldest first)", cols, cells, console.width, keep=4)
        console.print(failing)
