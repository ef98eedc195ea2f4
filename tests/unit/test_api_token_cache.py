"""The token cache forgets entries after its TTL and never grows past its bound."""

from __future__ import annotations

import pytest

from api import token_cache
from api.token_cache import TokenCache


def test_entry_expires_after_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: now[0])
    cache = TokenCache(ttl_seconds=10)
    cache.put("h", "ann")
    now[0] = 109.9
    assert cache.get("h") == "ann"
    now[0] = 110.0
    assert cache.get("h") is None


def test_least_recently_used_is_evicted() -> None:
    cache = TokenCache(ttl_seconds=60, max_entries=2)
    cache.put("a", "ann")
    cache.put("b", "bo")
    assert cache.get("a") == "ann"  # a is now the most recent
    cache.put("c", "cy")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("ann", "cy")


def test_zero_ttl_disables_caching() -> None:
    cache = TokenCache(ttl_seconds=0)
    cache.put("a", "ann")
    assert cache.get("a") is None
