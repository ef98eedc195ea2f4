"""A private RabbitMQ node that a test may stop, SIGKILL and restart at will.

The shared node ``rabbit@localhost`` on 5672 must never be touched, so chaos tests start
their own: a unique node name (``chaos-<hex>@localhost``), its own AMQP and distribution
ports, and every directory (Mnesia/quorum data, logs, config, enabled plugins, HOME with
its own Erlang cookie) under one temporary directory. The node is started with the
scripts in ``/usr/lib/rabbitmq/bin`` directly (the ``/usr/sbin`` wrappers switch to the
``rabbitmq`` user and would use the shared node's cookie and environment file).

A restart reuses the data directory, so durable queues and persistent messages survive
a graceful stop and a SIGKILL alike.

    with PrivateRabbit() as rabbit:
        rabbit.amqp_url()        # amqp://guest:guest@127.0.0.1:PORT/
        rabbit.stop()            # rabbitmqctl stop: graceful
        rabbit.kill()            # SIGKILL of the beam process
        rabbit.start()           # same data dir
        rabbit.list_queues()     # {"feed.events": {"consumers": 1, "messages": 0}, ...}
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from tests.support.tcpproxy import free_port

RABBIT_BIN = Path(os.environ.get("QA_TEST_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
SHARED_NODE = "rabbit@localhost"

_LIVE: weakref.WeakSet[PrivateRabbit] = weakref.WeakSet()


class PrivateRabbit:
    """One private single-node broker. Drive it from one thread at a time."""

    def __init__(self, port: int = 0, dist_port: int = 0, base_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.node = f"chaos-{secrets.token_hex(4)}@localhost"
        if self.node == SHARED_NODE:  # pragma: no cover - impossible by construction
            raise RuntimeError("refusing to manage the shared node")
        self.root = Path(tempfile.mkdtemp(prefix="qa-chaos-rabbit-", dir=base_dir))
        self.home = self.root / "home"
        self.log_dir = self.root / "log"
        self.mnesia_dir = self.root / "mnesia"
        self.console_log = self.root / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: Any = None
        self._write_files()
        _LIVE.add(self)

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> PrivateRabbit:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def start(self, timeout: float = 120.0) -> None:
        """Start the node (reusing its data directory) and wait for it to boot fully."""
        if self.running:
            return
        self._console = self.console_log.open("ab")
        self._proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.node} exited while starting:\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.node} did not boot in {timeout:g}s:\n{self.log_tail()}")
            result = self.ctl("await_startup", "--timeout", str(int(max(left, 1))), check=False)
            if result.returncode == 0:
                return
            time.sleep(0.5)

    def stop(self, timeout: float = 120.0) -> None:
        """Graceful stop (``rabbitmqctl stop``); waits until the node's process exits."""
        if not self.running:
            return
        self.ctl("stop", check=False, timeout=timeout)
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM (beam.smp): no chance to flush or say goodbye."""
        if self._proc is None:
            return
        for pid in _descendants(self._proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap(30.0, force=True)

    def restart(self, graceful: bool = True) -> None:
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()

    def destroy(self) -> None:
        """Kill the node and delete its directory. Safe to call twice."""
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        _LIVE.discard(self)

    # -- addresses and inspection -----------------------------------------------------

    def amqp_url(self, port: int | None = None, vhost: str = "") -> str:
        """``port`` lets callers point at a proxy in front of the node instead."""
        return f"amqp://guest:guest@127.0.0.1:{port or self.port}/{vhost}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def beam_pid(self) -> int | None:
        if self._proc is None:
            return None
        for pid in _descendants(self._proc.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
                    return pid
        return None

    def list_queues(self, vhost: str = "/") -> dict[str, dict[str, int]]:
        """Queue name -> ``{"consumers": n, "messages": n}`` in ``vhost`` (rabbitmqctl)."""
        out = self.ctl(
            "list_queues", "-p", vhost, "-q", "--formatter", "json", "name", "consumers", "messages"
        ).stdout
        rows = json.loads(out or "[]")
        return {
            row["name"]: {"consumers": int(row["consumers"]), "messages": int(row["messages"])}
            for row in rows
        }

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ...`` against this node only."""
        result = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in (self.console_log, *sorted(self.log_dir.glob("*.log"))):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(chunks)

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **keep,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.mnesia_dir),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.root / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    # -- internals -----------------------------------------------------------------

    def _write_files(self) -> None:
        for d in (self.home, self.log_dir, self.mnesia_dir):
            d.mkdir(parents=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (self.root / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.file.level = info\n"
            "log.console = false\n"
        )
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("# private test node: no shared settings\n")
        (self.root / "enabled_plugins").write_text("[].\n")

    def _reap(self, timeout: float, force: bool = False) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if not force:
                raise
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # Erlang helpers (erl_child_setup) die with the VM; wait so ports are free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _port_open(self.port):
            time.sleep(0.05)
        self._proc = None
        if self._console is not None:
            self._console.close()
            self._console = None


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendants, deepest last, plus ``pid`` itself first."""
    found = [pid]
    i = 0
    while i < len(found):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{found[i]}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    return found


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@atexit.register
def _cleanup_all() -> None:
    for node in list(_LIVE):
        node.destroy()
