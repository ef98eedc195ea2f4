"""Helpers shared by the ``qa-ops`` command groups."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from sqlalchemy import Engine

from outbox.db import make_engine
from outbox.settings import Settings

console = Console()
err_console = Console(stderr=True)


@contextmanager
def engine(url: Any = None) -> Iterator[Engine]:
    """A short-lived engine for one command (QA_DATABASE_URL unless ``url`` is given)."""
    eng = make_engine(url or Settings().database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=str, indent=2) + "\n")
