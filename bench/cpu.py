"""CPU seconds of whole process trees, read from ``/proc/<pid>/stat``.

A tree's CPU is the sum, over the root and every live descendant, of
``utime + stime + cutime + cstime``: the last two hold the CPU of children that already
exited and were reaped (PostgreSQL backends that disconnected are counted in the
postmaster's), so nothing that ran in the tree is lost between two snapshots, and
nothing is counted twice (a reaped child is no longer listed on its own).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds incl. reaped children) of every readable process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        out[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK)
    return out


def snapshot(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named tree (a root that is gone counts 0)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    result = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in procs:
                total += procs[pid][1]
            stack.extend(children.get(pid, ()))
        result[name] = total
    return result


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def broker_pids() -> dict[str, int]:
    """The local RabbitMQ node's Erlang VM (``beam.smp``), as a tree root; empty when it
    cannot be found. Its CPU includes anything else the node serves meanwhile."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    found[f"beam-{entry.name}"] = int(entry.name)
            except OSError:
                continue
    return found


def broker_seconds() -> float:
    """CPU seconds so far of the local RabbitMQ node(s)."""
    return sum(snapshot(broker_pids()).values())
