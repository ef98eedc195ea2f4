"""``qa-ops asyncapi``: write or check ``docs/asyncapi.json`` (the events contract)."""

from __future__ import annotations

from pathlib import Path

import typer

from ops.common import console, err_console
from outbox.asyncapi import render

app = typer.Typer(help="The AsyncAPI document of qa.events.", no_args_is_help=True)

_HELP = "Where the document lives (relative to the current directory)."


@app.command("write")
def write(path: Path = typer.Option(Path("docs/asyncapi.json"), help=_HELP)) -> None:
    """Generate the document from the event models and write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render())
    console.print(f"wrote {path}")


@app.command("check")
def check(path: Path = typer.Option(Path("docs/asyncapi.json"), help=_HELP)) -> None:
    """Exit 1 when the written document differs from the event models."""
    try:
        current = path.read_bytes()
    except OSError as exc:
        err_console.print(f"cannot read {path}: {exc.strerror}")
        raise typer.Exit(1) from exc
    if current != render():
        err_console.print(f"{path} is out of date: run `qa-ops asyncapi write --path {path}`")
        raise typer.Exit(1)
    console.print(f"{path} matches the event models")
