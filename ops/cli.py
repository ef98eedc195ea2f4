"""``qa-ops``: the operators' CLI. Exit codes: 0 ok, 1 failure, 2 usage error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from sqlalchemy.exc import OperationalError

from ops import asyncapi, dbcmd, dlq, events, outbox_status, tokens, topology, users
from outbox import tracing

app = typer.Typer(
    name="qa-ops",
    help="Operate the Q&A outbox service: database, tokens, outbox status, dead letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help (click's formatter): flags read `--json`, not `--json <bool>`, and the
    # text wraps at the terminal's width like any Unix tool's.
    rich_markup_mode=None,
)
app.add_typer(dbcmd.app, name="db")
app.add_typer(tokens.app, name="tokens")
app.add_typer(outbox_status.app, name="outbox")
app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.add_typer(users.app, name="users")
app.add_typer(asyncapi.app, name="asyncapi")
app.add_typer(topology.app, name="topology")


@app.command("console")
def console_() -> None:
    """Serve the operators' web console (QA_CONSOLE_HOST:QA_CONSOLE_PORT) until stopped.

    A launcher for ``qa-console``: the console is its own application package, which
    ``ops`` does not import.
    """
    exe = Path(sys.argv[0]).resolve().parent / "qa-console"
    if not exe.exists():
        exe = Path(sys.executable).parent / "qa-console"
    os.execv(exe, [str(exe)])


def main() -> None:
    # Replays record a span when OTEL_TRACES_EXPORTER is set; stdout stays the output
    # (--json), so the console exporter writes to stderr.
    tracing.setup("qa-ops", console_out=sys.stderr)
    try:
        app()
    except OperationalError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        print(f"qa-ops: database unavailable: {reason}", file=sys.stderr)
        sys.exit(1)
