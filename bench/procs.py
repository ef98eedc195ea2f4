"""Start and stop the system's real commands (``qa-relay``, ``qa-consumer feed``, ``qa-api``)
as subprocesses, optionally under ``py-spy record``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.profiling import Profiler

BIN = Path(sys.executable).parent


def command_exists(name: str) -> bool:
    return (BIN / name).exists() or shutil.which(name) is not None


class Proc:
    """One subprocess with its stderr in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        profile_path: Path | None = None,
    ) -> None:
        exe = BIN / args[0]
        self.args = [str(exe) if exe.exists() else args[0], *args[1:]]
        self.env = env
        self.log_path = log_path
        self.profile_path = profile_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.profiler: Profiler | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if self.profile_path is not None:
            self.profiler = Profiler(self.popen.pid, self.profile_path).start()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise with the tail of the log when the process died early."""
        if self.popen is not None and self.popen.poll() is not None:
            tail = self.log_tail()
            raise RuntimeError(
                f"{' '.join(self.args[:2])} exited with {self.popen.returncode}: {tail}"
            )

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.profiler is not None:
            self.profiler.stop()
            self.profiler = None
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
