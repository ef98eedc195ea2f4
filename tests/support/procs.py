"""The real console scripts as subprocesses: start, wait for readiness, stop, SIGKILL, restart.

Used by the chaos suite (and usable by e2e tests). Each process gets its own environment
(so each link can go through its own fault proxy), its own metrics port, and a log file
that survives restarts (appended to, with a marker line per start), so a report can show
what a process said before it was killed.

    api = spawn("api", log_dir, {"QA_DATABASE_URL": url_via_proxy})
    api.start()                 # waits until GET /readyz answers 200
    api.kill()                  # SIGKILL
    api.start()                 # same environment, same ports
    api.terminate()             # SIGTERM, returns the exit code

Every process started here is killed at interpreter exit, so a failing test never
leaves one running.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from tests.support.tcpproxy import free_port

BIN = Path(sys.executable).parent

COMMANDS: dict[str, list[str]] = {
    "api": ["qa-api"],
    "relay": ["qa-relay"],
    "feed": ["qa-consumer", "feed"],
    "dead-letters": ["qa-consumer", "dead-letters"],
    "notifier": ["qa-consumer", "run", "notifier"],
}
# The metrics port variable of each kind; readiness of non-HTTP processes is their
# metrics endpoint answering (each process starts it only after connecting).
METRICS_PORT_VAR = {
    "relay": "QA_RELAY_METRICS_PORT",
    "feed": "QA_CONSUMER_METRICS_PORT",
    "dead-letters": "QA_ARCHIVER_METRICS_PORT",
    "notifier": "QA_NOTIFIER_METRICS_PORT",
}
# Short retry tiers so transient failures come back within a test's patience.
TEST_DEFAULTS = {
    "QA_RETRY_DELAYS": "0.2,0.5,1,2",
    "QA_STARTUP_TIMEOUT_SECONDS": "60",
    "QA_LOG_LEVEL": "INFO",
}

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class NotReady(AssertionError):
    """A process exited or did not become ready in time; carries its log tail."""


class ManagedProcess:
    """One console script. Restartable: :meth:`start` after :meth:`kill` reuses the env."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[ManagedProcess], bool],
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.ready_check = ready
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def start(self, wait: bool = True, timeout: float = 90.0) -> ManagedProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        with self.log_path.open("ab") as log:
            marker = f"\n===== start #{self.starts} of {self.name} at {time.time():.3f}\n"
            log.write(marker.encode())
            log.flush()
            self.popen = subprocess.Popen(
                [str(BIN / self.argv[0]), *self.argv[1:]],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise NotReady(
                    f"{self.name} exited with {self.returncode} before ready:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError, OSError):
                if self.ready_check(self):
                    return
            time.sleep(0.1)
        raise NotReady(f"{self.name} not ready after {timeout:g}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye. A no-op if the process is not running."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def restart(self, kill: bool = True, wait: bool = True) -> None:
        if kill:
            self.kill()
        else:
            self.terminate()
        self.start(wait=wait)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def log_count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log_text()))


def http_ok(url: str) -> Callable[[ManagedProcess], bool]:
    def check(_: ManagedProcess) -> bool:
        return httpx.get(url, timeout=2).status_code == 200

    return check


def log_line(pattern: str) -> Callable[[ManagedProcess], bool]:
    """Ready once ``pattern`` appears in the log after the latest start marker."""
    regex = re.compile(pattern)

    def check(proc: ManagedProcess) -> bool:
        text = proc.log_text()
        return bool(regex.search(text[text.rfind("===== start #") :]))

    return check


def spawn(
    kind: str,
    log_dir: Path,
    overrides: Mapping[str, str] | None = None,
    name: str | None = None,
    base_env: Mapping[str, str] | None = None,
    argv: list[str] | None = None,
) -> ManagedProcess:
    """Build (not start) a process of ``kind`` (``api``, ``relay``, ``feed``, ``dead-letters``).

    The environment is ``base_env`` (default: this process's), then :data:`TEST_DEFAULTS`,
    then a free API or metrics port, then ``overrides``. Readiness: ``GET /readyz`` for the
    API; the metrics endpoint for the others, or their start-up log line when the
    override sets the metrics port to 0. ``argv`` replaces the command (a test double
    that honours the same environment and readiness signal).
    """
    env = {**(base_env if base_env is not None else os.environ), **TEST_DEFAULTS}
    if kind == "api":
        env["QA_API_PORT"] = str(free_port())
    else:
        env[METRICS_PORT_VAR[kind]] = str(free_port())
    env.update(overrides or {})
    ready: Callable[[ManagedProcess], bool]
    if kind == "api":
        ready = http_ok(f"http://127.0.0.1:{env['QA_API_PORT']}/readyz")
    elif env[METRICS_PORT_VAR[kind]] != "0":
        ready = http_ok(f"http://127.0.0.1:{env[METRICS_PORT_VAR[kind]]}/metrics")
    else:
        ready = log_line(r"(?i)\b(started|consuming|ready)\b")
    label = name or kind
    log_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(label, argv or COMMANDS[kind], env, log_dir / f"{label}.log", ready)


def api_base(proc: ManagedProcess) -> str:
    return f"http://127.0.0.1:{proc.env['QA_API_PORT']}"


@atexit.register
def _kill_all() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.kill()
