"""``py-spy record`` on a benchmark subprocess, summarised as the functions that dominate.

The raw (collapsed-stack) output is kept next to the result file; the summary lists the
top functions by self time (leaf frames) and by inclusive time (on the stack at all).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Self

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """Samples a running process until :meth:`stop` (py-spy writes its file on SIGINT)."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        exe = py_spy()
        if exe is None:
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                str(self.rate),
                "--nonblocking",
                "-o",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.popen = None


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


PROJECT = ("api/", "relay/", "consumers/", "outbox/")


def summarize(raw: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Where the process spent its samples, as shares (%) of the samples after start-up.

    ``self``: leaf functions (the CPU is in them). ``project``: the project's own
    functions by inclusive time (on the stack at all), the layer to optimise.
    Samples taken while importing (interpreter start-up) are counted apart.
    """
    if not raw.exists():
        return {}
    own: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = startup = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if "importlib._bootstrap" in stack:
            startup += count
            continue
        frames = [_short(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if name.split(" (", 1)[-1].startswith(PROJECT):
                project[name] += count
    if total == 0:
        return {}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "self": share(own),
        "project": share(project),
        "samples": [("after start-up", float(total)), ("start-up imports", float(startup))],
    }
