"""Opaque keyset cursor for ``GET /feed``: the last item's ``(created_at, question_id)``.

Encoded as URL-safe base64 with a short checksum, so a mangled or hand-edited cursor is
rejected (422) instead of silently starting somewhere else. The checksum is not a
secret: the feed is public and a forged position reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

_VERSION = "1"


class InvalidCursor(ValueError):
    """The cursor was not produced by :func:`encode`."""


@dataclass(frozen=True)
class Position:
    created_at: datetime
    question_id: uuid.UUID


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def encode(position: Position) -> str:
    payload = f"{_VERSION}|{position.created_at.isoformat()}|{position.question_id}"
    raw = f"{payload}|{_checksum(payload)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise InvalidCursor("cursor is not valid") from exc
    payload, _, checksum = raw.rpartition("|")
    parts = payload.split("|")
    if len(parts) != 3 or parts[0] != _VERSION or checksum != _checksum(payload):
        raise InvalidCursor("cursor is not valid")
    try:
        created_at = datetime.fromisoformat(parts[1])
        question_id = uuid.UUID(parts[2])
    except ValueError as exc:
        raise InvalidCursor("cursor is not valid") from exc
    if created_at.tzinfo is None:
        raise InvalidCursor("cursor is not valid")
    return Position(created_at, question_id)
