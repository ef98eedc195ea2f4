"""A short-lived, bounded cache of feed pages, and their ``ETag``/``Cache-Control``.

The feed may be "a little in the past" by design (it is an eventually consistent read
model anyway), so each API process keeps a rendered page for ``QA_API_FEED_CACHE_SECONDS``
(default 1 s): under heavy read traffic the popular pages (first pages of the big
subjects) are read from PostgreSQL about once per second per process instead of once
per request. The bound is strict: an entry is served only while younger than the TTL,
counted from the moment its database read *started*.

- **Key** = the parsed request: filter, page size and cursor position. Two requests
  share an entry only when they ask for exactly the same page (``answered=1`` and
  ``answered=true`` are the same page; any other difference is another entry).
- **Single flight**: concurrent misses for one key wait for one database read.
  A failed read is not cached; its waiters get the same error.
- **Bounded**: least recently used entries are dropped beyond ``QA_API_FEED_CACHE_ENTRIES``.
- **ETag** = a hash of the body, so it is the same across processes and across cache
  refills while the page is unchanged; ``If-None-Match`` then gets a ``304`` without a
  body. ``Cache-Control: public, max-age=<TTL>`` lets clients and proxies reuse a page
  as long again; with a TTL of 0 it is ``no-cache`` (always revalidate).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    body: bytes
    etag: str
    born: float  # clock time at which the database read started


def etag_of(body: bytes) -> str:
    """A strong validator for exactly these bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def cache_control(ttl: float) -> str:
    return f"public, max-age={math.floor(ttl)}" if ttl >= 1 else "no-cache"


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list against our ``etag``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


class FeedCache:
    """Rendered pages by key, each served for at most ``ttl`` seconds after its read began."""

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Task[Page]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._pages)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> Page:
        """The page for ``key``: cached if fresh, else loaded (once for concurrent callers)."""
        if self.ttl <= 0:
            born = self._clock()
            body = await load()
            return Page(body, etag_of(body), born)
        page = self._pages.get(key)
        if page is not None and self._clock() - page.born < self.ttl:
            self._pages.move_to_end(key)
            self.hits += 1
            return page
        task = self._loading.get(key)
        if task is None:
            self.misses += 1
            # The read runs in its own task: a caller that goes away (client disconnect)
            # does not cancel it for the other callers waiting on the same page.
            task = asyncio.ensure_future(self._load(key, load))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        else:
            self.hits += 1
        return await asyncio.shield(task)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> Page:
        try:
            born = self._clock()
            body = await load()
            page = Page(body, etag_of(body), born)
            self._store(key, page)
            return page
        finally:
            del self._loading[key]

    def _store(self, key: Hashable, page: Page) -> None:
        self._pages[key] = page
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_entries:
            self._pages.popitem(last=False)


def _retrieve(task: asyncio.Task[Page]) -> None:
    """Mark a failed read's error as seen when every caller went away before it ended."""
    if not task.cancelled():
        task.exception()
