"""``qa-ops dlq``: inspect, replay and discard dead letters."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dead letters: list, show, replay, discard.", no_args_is_help=True)
