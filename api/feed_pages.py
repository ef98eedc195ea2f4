"""One feed page as an HTTP answer: status, headers and body, shared by both ways in.

``GET /feed`` is served either by FastAPI (``api/routes/feed.py``: validation, 422s,
the OpenAPI description) or by the lean ASGI path (``api/feed_fast.py``) for requests
already known to be well formed. Both ask :class:`FeedPages` for the answer, so the
cache, the ``ETag``/``304`` rule and the headers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import cursor as cursors
from api.feed_cache import FeedCache, cache_control, not_modified
from api.feed_query import FeedFilter, FeedReader

DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class Answer:
    status: int
    # Raw (lower-case name, value) pairs in the order Starlette's ``Response`` emits them.
    headers: list[tuple[bytes, bytes]]
    body: bytes


class FeedPages:
    """The feed reader behind the short-lived page cache."""

    def __init__(self, reader: FeedReader, cache: FeedCache) -> None:
        self.reader = reader
        self.cache = cache
        self._cache_control = cache_control(cache.ttl).encode("latin-1")

    async def answer(
        self,
        where: FeedFilter,
        after: cursors.Position | None,
        limit: int,
        if_none_match: str | None,
    ) -> Answer:
        """The page (from the cache when fresh), or ``304`` when the client has it."""
        reader = self.reader
        page = await self.cache.get((where, after, limit), lambda: reader.page(where, after, limit))
        headers = [(b"etag", page.etag.encode("latin-1")), (b"cache-control", self._cache_control)]
        if not_modified(if_none_match, page.etag):
            return Answer(304, headers, b"")
        headers.append((b"content-length", str(len(page.body)).encode("latin-1")))
        headers.append((b"content-type", b"application/json"))
        return Answer(200, headers, page.body)
