"""Dead letters grouped by subscriber, error class and failure fingerprint.

The fingerprint is the error class plus the innermost frame of the project's own code in
the traceback excerpt (``consumers/feed.py:apply``: file and function, no line number, so
a redeploy that moves lines keeps the group). Frames from the standard library and from
installed packages are skipped: the same driver error raised from two different places
in our code is two different problems. Letters without a traceback (broker dead letters,
malformed headers) get ``-`` as their frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from outbox.models import DeadLetter

PROJECT_PACKAGES = ("outbox", "api", "relay", "consumers", "ops", "console")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>\S+)', re.MULTILINE)
NO_FRAME = "-"


def project_frame(traceback: str | None) -> str:
    """``package/module.py:function`` of the innermost frame in the project's own code."""
    if not traceback:
        return NO_FRAME
    found = NO_FRAME
    for match in _FRAME.finditer(traceback):
        path = match.group("path").replace("\\", "/")
        if "site-packages/" in path or "dist-packages/" in path:
            continue
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            if parts[i - 1] in PROJECT_PACKAGES:
                found = f"{'/'.join(parts[i - 1 :])}:{match.group('func')}"
                break
    return found


def subscriber_of(failed_queue: str) -> str:
    """The subscriber a consumer queue belongs to (``feed.events`` -> ``feed``)."""
    return failed_queue.removesuffix(".events")


@dataclass(frozen=True)
class GroupKey:
    subscriber: str
    error_class: str
    frame: str

    @property
    def fingerprint(self) -> str:
        return f"{self.error_class} @ {self.frame}"


@dataclass
class Group:
    key: GroupKey
    ids: list[int]
    first_seen: datetime
    last_seen: datetime
    event_types: set[str]

    @property
    def count(self) -> int:
        return len(self.ids)


def _rows(conn: Connection, status: str) -> list[dict[str, Any]]:
    query = select(
        DeadLetter.id,
        DeadLetter.failed_queue,
        DeadLetter.error_class,
        DeadLetter.traceback,
        DeadLetter.event_type,
        DeadLetter.dead_lettered_at,
    ).where(DeadLetter.status == status)
    return [dict(r) for r in conn.execute(query.order_by(DeadLetter.id)).mappings()]


def groups(conn: Connection, status: str = "dead") -> list[Group]:
    """Every group of letters in ``status``, largest first, ids oldest first."""
    found: dict[GroupKey, Group] = {}
    for row in _rows(conn, status):
        key = GroupKey(
            subscriber_of(row["failed_queue"]), row["error_class"], project_frame(row["traceback"])
        )
        when = row["dead_lettered_at"]
        group = found.get(key)
        if group is None:
            found[key] = Group(key, [row["id"]], when, when, {row["event_type"] or "-"})
            continue
        group.ids.append(row["id"])
        group.first_seen = min(group.first_seen, when)
        group.last_seen = max(group.last_seen, when)
        group.event_types.add(row["event_type"] or "-")
    return sorted(found.values(), key=lambda g: (-g.count, g.key.subscriber, g.key.fingerprint))


def find_group(conn: Connection, key: GroupKey, status: str = "dead") -> Group | None:
    """The current members of one group (it changes as letters are replayed or arrive)."""
    return next((g for g in groups(conn, status) if g.key == key), None)
