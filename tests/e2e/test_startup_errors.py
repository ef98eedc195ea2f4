"""Permanent start-up errors end the start at once with the real reason.

Each process gets a start-up budget of an hour: only failing fast (not retrying until the
budget runs out) lets it exit within the subprocess deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import AMQP_BASE, PG_ADMIN_URL
from tests.support.tcpproxy import free_port

BIN = Path(sys.executable).parent


def start(
    argv: list[str], services: dict[str, str], **env: str
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        **services,
        "QA_STARTUP_TIMEOUT_SECONDS": "3600",
        "QA_API_PORT": str(free_port()),
        "QA_RELAY_METRICS_PORT": "0",
        "QA_CONSUMER_METRICS_PORT": "0",
        "QA_ARCHIVER_METRICS_PORT": "0",
        **env,
    }
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=full, capture_output=True, text=True, timeout=90
    )


def test_missing_vhost_fails_at_once_naming_it(services: dict[str, str]) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:6]}"
    result = start(["qa-consumer", "dead-letters"], services, QA_AMQP_URL=f"{AMQP_BASE}/{vhost}")
    assert result.returncode == 1
    (line,) = [x for x in result.stderr.splitlines() if "cannot start" in x]
    assert vhost in line and "refused the virtual host" in line


def test_wrong_broker_password_fails_at_once(services: dict[str, str]) -> None:
    url = services["QA_AMQP_URL"].replace("guest:guest@", "guest:wrong@")
    result = start(["qa-consumer", "feed"], services, QA_AMQP_URL=url)
    assert result.returncode == 1
    assert "access refused" in result.stderr
    assert "wrong@" not in result.stderr  # the password is never printed


def test_missing_database_fails_at_once(services: dict[str, str]) -> None:
    name = f"qa_missing_{uuid.uuid4().hex[:6]}"
    result = start(["qa-api"], services, QA_DATABASE_URL=f"{PG_ADMIN_URL}/{name}")
    assert result.returncode == 1
    assert f'database "{name}" does not exist' in result.stderr
