"""``GET /feed``: newest questions first, filtered, keyset-paginated.

Reads the feed read model only (``feed.questions``), never the write tables. A row
exists before its ``question.created`` event when an answer arrived first; such rows
have no title yet and are not shown. Pages are read by :mod:`api.feed_query` (raw
psycopg, orjson) through the short-lived cache of :mod:`api.feed_cache`, and carry an
``ETag`` (``If-None-Match`` gets ``304``) and ``Cache-Control``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api import paging
from api.deps import SettingsDep
from api.feed_cache import FeedCache, cache_control, not_modified
from api.feed_query import FeedFilter, FeedReader
from api.paging import page_limit
from api.schemas import FeedPage
from outbox.events import Grade, Slug

router = APIRouter(tags=["feed"])

DEFAULT_LIMIT = 20


@router.get(
    "/feed",
    response_model=FeedPage,
    responses={
        304: {"description": "Not modified (the ETag in If-None-Match is current)"},
        422: {"description": "Invalid filter"},
    },
)
async def get_feed(
    request: Request,
    settings: SettingsDep,
    subject: Annotated[Slug | None, Query(description="lowercase slug")] = None,
    grade: Annotated[Grade | None, Query(description="1-12")] = None,
    answered: Annotated[bool | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, description="page size (capped)")] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Questions newest first. Pass ``next_cursor`` back as ``cursor`` for the next page.

    Pages may be up to ``QA_API_FEED_CACHE_SECONDS`` old (default 1 s)."""
    limit = page_limit(limit, DEFAULT_LIMIT, settings.api_feed_max_limit)
    after = paging.after(cursor, "feed")
    where = FeedFilter(subject, grade, answered)
    reader: FeedReader = request.app.state.feed_reader
    cache: FeedCache = request.app.state.feed_cache
    page = await cache.get((where, after, limit), lambda: reader.page(where, after, limit))
    headers = {"ETag": page.etag, "Cache-Control": cache_control(cache.ttl)}
    if not_modified(if_none_match, page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type="application/json", headers=headers)
