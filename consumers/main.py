"""``qa-consumer``: ``feed`` runs the feed consumer, ``dead-letters`` the dead-letter archiver.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when a dependency stayed
unreachable past ``QA_STARTUP_TIMEOUT_SECONDS`` or the configuration is invalid.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from outbox.runtime import run, setup_logging
from outbox.settings import Settings

app = typer.Typer(
    name="qa-consumer",
    help="Run a consumer of the Q&A events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(name: str) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "settings"
        print(f"{name}: invalid configuration: {where}: {first['msg']}", file=sys.stderr)
        raise typer.Exit(1) from None
    setup_logging(settings.log_level, settings.log_format)
    return settings


@app.command()
def feed() -> None:
    """Apply question and answer events to the feed read model (queue feed.events)."""
    from consumers.service import run_feed

    settings = _settings("qa-consumer feed")
    raise typer.Exit(run(lambda: run_feed(settings), "qa-consumer feed"))


@app.command("dead-letters")
def dead_letters() -> None:
    """Archive dead letters from feed.dead into PostgreSQL (feed.dead_letters)."""
    # Imported here so the feed consumer works whether or not the archiver is installed.
    from consumers.archiver import run_archiver

    settings = _settings("qa-consumer dead-letters")
    raise typer.Exit(run(lambda: run_archiver(settings), "qa-consumer dead-letters"))


def main() -> None:
    """Console script ``qa-consumer``."""
    app()
