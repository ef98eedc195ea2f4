"""Chaos fixtures: one private PostgreSQL + RabbitMQ (+ proxies) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import ChaosServers


@pytest.fixture(scope="session")
def chaos_servers() -> Iterator[ChaosServers]:
    servers = ChaosServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


@pytest.fixture
def chaos_log_dir(tmp_path: Path) -> Path:
    """Process logs of one scenario; QA_CHAOS_LOG_DIR keeps them somewhere stable."""
    base = os.environ.get("QA_CHAOS_LOG_DIR")
    return Path(base) / tmp_path.name if base else tmp_path / "logs"
