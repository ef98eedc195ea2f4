"""The feed page cache: bounded staleness, one read per key at a time, no sharing between
keys, failures never cached, LRU bound; and the If-None-Match comparison."""

from __future__ import annotations

import asyncio

import pytest

from api.feed_cache import FeedCache, cache_control, etag_of, not_modified


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Returns a new body on every call, so a reload is visible in the result."""

    def __init__(self, clock: Clock | None = None, takes: float = 0.0) -> None:
        self.calls = 0
        self.clock = clock
        self.takes = takes

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.takes  # the read itself takes time
        return f"body {self.calls}".encode()


async def test_page_is_served_until_ttl_then_read_again() -> None:
    clock = Clock()
    cache = FeedCache(ttl=1.0, max_entries=10, clock=clock)
    load = Loader()
    first = await cache.get("k", load)
    clock.now += 0.999
    assert (await cache.get("k", load)).body == first.body == b"body 1"
    clock.now += 0.001  # exactly the TTL after the read began: too old
    assert (await cache.get("k", load)).body == b"body 2"
    assert load.calls == 2


async def test_age_counts_from_the_start_of_the_read() -> None:
    """A slow read must not extend the bound: its data is as old as the read's start."""
    clock = Clock()
    cache = FeedCache(ttl=1.0, max_entries=10, clock=clock)
    load = Loader(clock, takes=0.6)
    await cache.get("k", load)  # began at 1000.0, ended at 1000.6
    clock.now = 1000.99
    assert (await cache.get("k", load)).body == b"body 1"
    clock.now = 1001.0
    assert (await cache.get("k", load)).body == b"body 2"


async def test_different_keys_never_share_an_entry() -> None:
    cache = FeedCache(ttl=60.0, max_entries=10, clock=Clock())
    bodies = {}
    for key in ("a", "b", ("a", None), ("a", 1)):
        bodies[key] = (await cache.get(key, Loader())).body
        assert (await cache.get(key, Loader())).body == bodies[key]
    assert len(cache) == 4


async def test_concurrent_misses_share_one_read() -> None:
    cache = FeedCache(ttl=1.0, max_entries=10, clock=Clock())
    gate = asyncio.Event()
    calls = 0

    async def slow() -> bytes:
        nonlocal calls
        calls += 1
        await gate.wait()
        return b"page"

    waiters = [asyncio.create_task(cache.get("k", slow)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    pages = await asyncio.gather(*waiters)
    assert calls == 1
    assert {p.body for p in pages} == {b"page"}


async def test_a_failed_read_is_not_cached_and_reaches_every_waiter() -> None:
    cache = FeedCache(ttl=60.0, max_entries=10, clock=Clock())
    gate = asyncio.Event()

    async def broken() -> bytes:
        await gate.wait()
        raise ConnectionError("database gone")

    waiters = [asyncio.create_task(cache.get("k", broken)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert len(cache) == 0
    assert (await cache.get("k", Loader())).body == b"body 1"


async def test_a_caller_going_away_does_not_cancel_the_read_for_the_others() -> None:
    cache = FeedCache(ttl=60.0, max_entries=10, clock=Clock())
    gate = asyncio.Event()

    async def slow() -> bytes:
        await gate.wait()
        return b"page"

    leader = asyncio.create_task(cache.get("k", slow))
    await asyncio.sleep(0)
    follower = asyncio.create_task(cache.get("k", slow))
    await asyncio.sleep(0)
    leader.cancel()
    gate.set()
    assert (await follower).body == b"page"
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_least_recently_used_pages_are_dropped_beyond_the_bound() -> None:
    cache = FeedCache(ttl=60.0, max_entries=2, clock=Clock())
    await cache.get("a", Loader())
    await cache.get("b", Loader())
    await cache.get("a", Loader())  # a is now the most recent
    await cache.get("c", Loader())
    assert len(cache) == 2
    reread = Loader()
    await cache.get("b", reread)
    assert reread.calls == 1
    kept = Loader()
    await cache.get("c", kept)
    assert kept.calls == 0


async def test_ttl_zero_reads_every_time() -> None:
    cache = FeedCache(ttl=0.0, max_entries=10, clock=Clock())
    load = Loader()
    await cache.get("k", load)
    await cache.get("k", load)
    assert load.calls == 2 and len(cache) == 0


def test_etag_depends_on_the_bytes_only() -> None:
    assert etag_of(b"x") == etag_of(b"x") != etag_of(b"y")
    assert etag_of(b"x").startswith('"') and etag_of(b"x").endswith('"')


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"nope", "abc"', True),
        ('"nope",W/"abc"', True),
        ("*", True),
        ('"abcd"', False),
        ("abc", False),
        ('"ABC"', False),
    ],
)
def test_if_none_match(header: str | None, expected: bool) -> None:
    assert not_modified(header, '"abc"') is expected


def test_cache_control_follows_the_ttl() -> None:
    assert cache_control(1.0) == "public, max-age=1"
    assert cache_control(2.5) == "public, max-age=2"
    assert cache_control(0.5) == "no-cache"
    assert cache_control(0.0) == "no-cache"
