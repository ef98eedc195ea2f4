"""Isolation: a dedicated database (``qa_bench``) and RabbitMQ vhost (``qa-bench``) per run.

The benchmark never touches the database or vhost of a running system or test session.
Both are created (and migrated) at the start and dropped at the end unless ``keep`` is set.
Subprocesses get them through ``QA_DATABASE_URL`` / ``QA_AMQP_URL``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field

import psycopg

from outbox.db import libpq_dsn
from outbox.migrate import ensure_database, upgrade

PG_ADMIN_URL = os.environ.get("QA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("QA_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: the benchmark needs it for its private vhost")
    subprocess.run([exe, *args], check=check, capture_output=True, timeout=120)


def free_port() -> int:
    """A TCP port nobody listens on right now (small race accepted: benchmark only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BenchEnv:
    """Names and URLs of the private database and vhost of this run."""

    # Overridable so two benchmark runs on one machine do not drop each other's database.
    database: str = field(default_factory=lambda: os.environ.get("QA_BENCH_DATABASE", "qa_bench"))
    vhost: str = field(default_factory=lambda: os.environ.get("QA_BENCH_VHOST", "qa-bench"))
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return f"{PG_ADMIN_URL}/{self.database}"

    @property
    def amqp_url(self) -> str:
        return f"{AMQP_BASE}/{self.vhost}"

    @property
    def dsn(self) -> str:
        """Plain libpq DSN for raw psycopg connections."""
        return libpq_dsn(self.database_url)

    def process_env(self, **overrides: str) -> dict[str, str]:
        """Environment for a subprocess: inherits ours, pinned to the private services.

        Metrics servers are switched off (port 0) so a benchmark never collides with a
        running system's default ports.
        """
        env = dict(os.environ)
        env.update(
            {
                "QA_DATABASE_URL": self.database_url,
                "QA_FEED_DATABASE_URL": self.database_url,
                "QA_AMQP_URL": self.amqp_url,
                "QA_RELAY_METRICS_PORT": "0",
                "QA_CONSUMER_METRICS_PORT": "0",
                "QA_ARCHIVER_METRICS_PORT": "0",
                "QA_LOG_LEVEL": "WARNING",
                # Retention must not delete rows the benchmark still reads.
                "QA_RELAY_RETENTION_SECONDS": "86400",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def setup(self) -> None:
        """Create (fresh) database and vhost."""
        self.teardown()
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        ensure_database(self.database_url)
        upgrade(self.database_url)

    def teardown(self) -> None:
        """Drop database and vhost (ignores their absence)."""
        admin = libpq_dsn(f"{PG_ADMIN_URL}/postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        _rabbitmqctl("delete_vhost", self.vhost, check=False)

    def reset_tables(self) -> None:
        """Empty every table a part writes, so parts never see each other's rows."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE qa.outbox, qa.answers, qa.questions, qa.idempotency_keys,"
                " subscribers.inbox, feed.questions RESTART IDENTITY CASCADE"
            )
            conn.execute("VACUUM ANALYZE qa.outbox")
