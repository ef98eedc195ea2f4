"""A streaming standby of a :class:`PrivatePostgres`, made with ``pg_basebackup``.

    primary = PrivatePostgres(); primary.start()
    standby = PrivateStandby(primary); standby.start()   # pg_basebackup -R, then start
    make_synchronous(primary)      # synchronous_standby_names = '*': commits wait for it
    primary.kill(); standby.promote()

The synchronous setting is made on the primary *after* the base backup, so the standby
does not inherit it: once promoted it must not wait for a standby of its own.
"""

from __future__ import annotations

import time

import psycopg

from tests.support.private_pg import PrivatePostgres


class PrivateStandby(PrivatePostgres):
    def __init__(self, primary: PrivatePostgres, via_port: int | None = None) -> None:
        """``via_port``: reach the primary through this port (a proxy) for the base backup
        and for streaming, so a test can cut replication."""
        super().__init__()
        self.primary = primary
        self.upstream_port = via_port or primary.port

    def init(self) -> None:
        """Copy the primary with ``pg_basebackup -R`` (standby.signal + primary_conninfo)."""
        self._pg(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.upstream_port),
            "-U",
            "postgres",
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            timeout=120,
        )
        # The copied postgresql.conf names the primary's port and socket: later lines win.
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\nport = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n")
        self._initialised = True

    def promote(self, timeout: float = 60.0) -> None:
        """``pg_ctl promote`` and wait until it accepts writes."""
        self._pg("pg_ctl", "-D", str(self.data_dir), "-w", "promote", timeout=timeout)
        deadline = time.monotonic() + timeout
        while _in_recovery(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("standby still in recovery after promote")
            time.sleep(0.1)


def _in_recovery(port: int) -> bool:
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres") as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])


def make_synchronous(primary: PrivatePostgres, timeout: float = 60.0) -> None:
    """Every commit on ``primary`` now waits until a standby has flushed it; returns once
    a standby is attached and reported as synchronous."""
    dsn = f"host=127.0.0.1 port={primary.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            ).fetchone()
            if row and row[0] >= 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("no synchronous standby attached")
            time.sleep(0.2)
