"""A small in-process cache of valid tokens, so a write does not pay a lookup each time.

Only valid tokens are cached (a wrong token always reaches the database), for a short
TTL: revoking a token takes effect within ``ttl_seconds`` on every API process.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class TokenCache:
    """token hash -> user name, least recently used evicted beyond ``max_entries``."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, token_hash: str) -> str | None:
        if self._ttl <= 0:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        user, expires = entry
        if time.monotonic() >= expires:
            del self._entries[token_hash]
            return None
        self._entries.move_to_end(token_hash)
        return user

    def put(self, token_hash: str, user: str) -> None:
        if self._ttl <= 0:
            return
        self._entries[token_hash] = (user, time.monotonic() + self._ttl)
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
