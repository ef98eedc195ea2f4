"""``qa-consumer``: ``run NAME`` runs one subscriber, ``dead-letters`` the archiver.

``qa-consumer feed`` is kept as a short form of ``qa-consumer run feed``. Subscribers are
found through entry points (group ``qa.subscribers``, see :mod:`outbox.subscribers`), so
this module names none of them.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when a dependency stayed
unreachable past ``QA_STARTUP_TIMEOUT_SECONDS`` or the configuration is invalid, 2 for
an unknown subscriber.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from outbox import subscribers, tracing
from outbox.runtime import run, setup_logging
from outbox.settings import Settings

app = typer.Typer(
    name="qa-consumer",
    help="Run a subscriber of the Q&A events, or the dead-letter archiver.",
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


def _run(name: str, command: str) -> None:
    from consumers.runtime.service import run_subscriber

    try:
        subscriber = subscribers.get(name)
    except KeyError as exc:
        print(f"qa-consumer: {exc.args[0]}", file=sys.stderr)
        raise typer.Exit(2) from None
    settings = _settings(command)
    tracing.setup(f"qa-consumer-{name}")
    tracing.instrument_psycopg()  # SQL spans inside each batch's process span
    raise typer.Exit(
        run(lambda: run_subscriber(settings, subscriber), command, settings.event_loop)
    )


@app.command("run")
def run_(name: str = typer.Argument(..., metavar="NAME", help="The subscriber's name.")) -> None:
    """Run one subscriber: consume <NAME>.events, apply, retry, dead-letter."""
    _run(name, f"qa-consumer run {name}")


@app.command()
def feed() -> None:
    """Same as `run feed`: apply question and answer events to the feed read model."""
    _run("feed", "qa-consumer feed")


@app.command("list")
def list_() -> None:
    """The registered subscribers, their queues and accepted events."""
    for sub in subscribers.discover().values():
        accepted = ", ".join(f"{t} v{v}" for t, v in sorted(sub.handlers))
        print(f"{sub.name}\t{sub.queue}\t{accepted}")


@app.command("dead-letters")
def dead_letters() -> None:
    """Archive every subscriber's dead letters (<name>.dead) into PostgreSQL."""
    from consumers.runtime.archiver import run_archiver

    settings = _settings("qa-consumer dead-letters")
    raise typer.Exit(
        run(lambda: run_archiver(settings), "qa-consumer dead-letters", settings.event_loop)
    )


def main() -> None:
    """Console script ``qa-consumer``."""
    app()
