"""Shared fixtures.

Integration and e2e tests run against the real local PostgreSQL and RabbitMQ. Each test
session gets its own freshly migrated database (``qa_test_<hex>``) and its own RabbitMQ
vhost (``qa-test-<hex>``), so runs never see each other's rows or queues and a system
started from the quick start on the same machine is never disturbed. Tests inside a
session isolate themselves by unique ids.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from outbox.db import make_engine
from outbox.migrate import ensure_database, upgrade
from outbox.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("QA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("QA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")

_KINDS = ("unit", "integration", "e2e", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in (tests/unit -> unit, ...)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in _KINDS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: tests need it to create a private vhost")
    subprocess.run([exe, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    """A private database and vhost for this session, exported as QA_* variables."""
    tag = uuid.uuid4().hex[:10]
    db_url = f"{PG_ADMIN_URL}/qa_test_{tag}"
    vhost = f"qa-test-{tag}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    ensure_database(db_url)
    upgrade(db_url)
    env = {"QA_DATABASE_URL": db_url, "QA_AMQP_URL": f"{AMQP_BASE}/{vhost}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not os.environ.get("QA_TEST_KEEP"):
            _drop_database(f"qa_test_{tag}")
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def _drop_database(name: str) -> None:
    admin = make_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def settings(services: dict[str, str]) -> Settings:
    """Settings pointing at this session's private database and vhost."""
    return Settings()


@pytest.fixture(scope="session")
def db(services: dict[str, str]) -> Iterator[Engine]:
    """A synchronous engine on the session database, for arranging and checking rows."""
    engine = make_engine(services["QA_DATABASE_URL"])
    yield engine
    engine.dispose()
