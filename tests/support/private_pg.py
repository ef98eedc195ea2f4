"""A throwaway PostgreSQL cluster that a test may stop, crash and restart at will.

The shared server on 5432 must never be restarted by a test, so chaos tests start their
own cluster: ``initdb`` into a temporary directory, trust auth, a spare TCP port on
127.0.0.1 and a unix socket in the same temporary directory. PostgreSQL refuses to run
as root, so when the tests run as root the cluster runs as the ``postgres`` user.

Every cluster is registered for clean-up at interpreter exit, so a failing test (or a
Ctrl-C) never leaves a postmaster behind.

    with PrivatePostgres() as pg:
        url = pg.url("qa")            # postgresql+psycopg://postgres@127.0.0.1:PORT/qa
        pg.restart(mode="immediate")  # crash-like stop, then start: WAL recovery runs
        pg.kill()                     # SIGKILL of the postmaster and its children
        pg.start()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Literal

from tests.support.tcpproxy import free_port

PG_BIN = Path(os.environ.get("QA_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
StopMode = Literal["smart", "fast", "immediate"]

_LIVE: weakref.WeakSet[PrivatePostgres] = weakref.WeakSet()


def _run_as() -> str | None:
    """The OS user the cluster runs as: ``postgres`` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


class PrivatePostgres:
    """One private cluster. Not thread-safe: drive it from one thread at a time."""

    def __init__(self, port: int = 0, base_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="qa-chaos-pg-", dir=base_dir))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root
        self.log_file = self.root / "postgres.log"
        self._initialised = False
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        _LIVE.add(self)

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def init(self) -> None:
        """Create the cluster (``initdb``). Called by the first :meth:`start`."""
        self._pg(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            timeout=120,
        )
        # fsync off: tests crash processes, never the OS, and written WAL survives a
        # process crash in the page cache; it keeps restarts and commits fast.
        conf = (
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 200\n"
            "fsync = off\n"
            "shared_buffers = 64MB\n"
            "log_min_messages = warning\n"
            "log_connections = off\n"
        )
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# private test cluster\n" + conf)
        self._initialised = True

    def start(self, timeout: float = 60.0) -> None:
        """Start the postmaster and wait until it accepts connections."""
        if not self._initialised:
            self.init()
        self._wait_orphans_gone(timeout)
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )

    def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """Stop the cluster. ``immediate`` is a crash-like stop: the next start recovers WAL."""
        if not self.running:
            return
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            timeout=timeout + 10,
        )

    def restart(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        self.stop(mode, timeout)
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend it started (a hard crash)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        _wait_pids_gone(victims, 30.0)
        # A killed postmaster may linger as a zombie until its parent (init) reaps it;
        # PostgreSQL would take the stale pid file for a live server and refuse to start.
        stale = (
            self.data_dir / "postmaster.pid",
            self.socket_dir / f".s.PGSQL.{self.port}.lock",
            self.socket_dir / f".s.PGSQL.{self.port}",
        )
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def destroy(self) -> None:
        """Stop (immediately) and delete the data directory. Safe to call twice."""
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate", timeout=30)
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        _LIVE.discard(self)

    # -- addresses -----------------------------------------------------------------

    def url(self, dbname: str = "postgres", port: int | None = None) -> str:
        """SQLAlchemy URL (psycopg 3). ``port`` lets callers point at a proxy instead."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{dbname}"

    # -- state ---------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- internals -----------------------------------------------------------------

    def _pg(self, tool: str, *args: str, timeout: float) -> None:
        proc = subprocess.run(
            [str(PG_BIN / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args[-1:])} failed ({proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{self.log_tail()}"
            )

    def _wait_orphans_gone(self, timeout: float) -> None:
        """After a SIGKILL, old backends may still hold shared memory; wait for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pids_using(self.data_dir):
                return
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_pids_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _pids_using(data_dir: Path) -> list[int]:
    """Processes whose working directory is ``data_dir`` (every backend chdirs there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd") == str(data_dir) and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@atexit.register
def _cleanup_all() -> None:
    for cluster in list(_LIVE):
        cluster.destroy()
