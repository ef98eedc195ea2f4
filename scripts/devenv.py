"""The local settings of a checkout: ``.env`` and the dev tokens (used by ``./dev.sh run``).

``.env`` holds the ``QA_*`` settings the system was started with; every command started in
the checkout reads it (``outbox/settings.py``), so ``qa-ops`` talks to the same database
and broker as the running system. Variables set in the environment when ``./dev.sh run``
starts are merged into it; edit or delete the file to change them.

The dev tokens (``.run/dev-token`` for the API, ``.run/dev-operator-token`` for the console)
are checked against the database in use and re-created when they do not work there (a new
or dropped database, a revoked token).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from outbox.db import make_engine
from outbox.models import ApiToken
from outbox.settings import Settings
from outbox.tokens import hash_token

ENV_FILE = Path(os.environ.get("QA_ENV_FILE") or ".env")
BIN = Path(sys.executable).parent
HEADER = "# QA_* settings of `./dev.sh run`; every command in this checkout reads them.\n"


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().startswith("QA_"):
                values[key.strip()] = value.strip()
    return values


def save_env(path: Path = ENV_FILE) -> dict[str, str]:
    """Merge the QA_* environment into ``path``; returns what the file now holds."""
    values = read_env(path)
    skip = {"QA_ENV_FILE", "QA_VENV"}
    values.update({k: v for k, v in os.environ.items() if k.startswith("QA_") and k not in skip})
    body = HEADER + "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    path.write_text(body)
    path.chmod(0o600)  # may hold passwords
    return values


def _works(token: str, role: str) -> bool:
    engine = make_engine(Settings().database_url)
    try:
        with engine.connect() as conn:
            found = conn.scalar(
                select(ApiToken.id).where(
                    ApiToken.token_hash == hash_token(token),
                    ApiToken.revoked_at.is_(None),
                    ApiToken.role == role,
                )
            )
    finally:
        engine.dispose()
    return found is not None


def dev_token(path: Path, user: str, role: str) -> str:
    """The saved token if it works on this database, else a new one (saved)."""
    if path.exists():
        saved = path.read_text().strip()
        if saved and _works(saved, role):
            return saved
    out = subprocess.run(
        [str(BIN / "qa-ops"), "tokens", "create", "--user", user, "--role", role],
        check=True,
        capture_output=True,
        text=True,
    )
    token = out.stdout.strip()
    path.parent.mkdir(exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token
