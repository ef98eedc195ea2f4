"""Opaque keyset cursors: the last item's ``(created_at, id)`` of a page.

``GET /feed`` pages questions by ``(created_at, question_id)``; ``GET /questions/{id}``
pages answers by ``(created_at, answer id)``. Each kind has its own tag, so a cursor of
one is rejected by the other.

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
from typing import Literal

# Tag per kind (the feed's "1" predates the answers' cursor and stays valid).
Kind = Literal["feed", "answers"]
_TAGS: dict[Kind, str] = {"feed": "1", "answers": "a1"}


class InvalidCursor(ValueError):
    """The cursor was not produced by :func:`encode`."""


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: uuid.UUID


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def encode(position: Position, kind: Kind = "feed") -> str:
    payload = f"{_TAGS[kind]}|{position.created_at.isoformat()}|{position.id}"
    raw = f"{payload}|{_checksum(payload)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, kind: Kind = "feed") -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise InvalidCursor("cursor is not valid") from exc
    payload, _, checksum = raw.rpartition("|")
    parts = payload.split("|")
    if len(parts) != 3 or parts[0] != _TAGS[kind] or checksum != _checksum(payload):
        raise InvalidCursor("cursor is not valid")
    try:
        created_at = datetime.fromisoformat(parts[1])
        row_id = uuid.UUID(parts[2])
    except ValueError as exc:
        raise InvalidCursor("cursor is not valid") from exc
    if created_at.tzinfo is None:
        raise InvalidCursor("cursor is not valid")
    return Position(created_at, row_id)
