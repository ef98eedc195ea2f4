"""``GET /feed``: newest questions first, filtered, keyset-paginated.

Reads the feed read model only (``feed.questions``), never the write tables. A row
exists before its ``question.created`` event when an answer arrived first; such rows
have no title yet and are not shown. Pages are read by :mod:`api.feed_query` (raw
psycopg, orjson) through the short-lived cache of :mod:`api.feed_cache`, and carry an
``ETag`` (``If-None-Match`` gets ``304``) and ``Cache-Control``.

This route is the reference: it validates every parameter (422s) and describes the
endpoint in the OpenAPI document. Well-formed requests are usually answered before they
reach it, by the lean ASGI path of :mod:`api.feed_fast`, with the same answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api import paging
from api.deps import SettingsDep
from api.feed_pages import DEFAULT_LIMIT, FeedPages
from api.feed_query import FeedFilter
from api.paging import page_limit
from api.schemas import FeedPage
from outbox.events import Grade, Slug

router = APIRouter(tags=["feed"])


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
    pages: FeedPages = request.app.state.feed
    answer = await pages.answer(where, after, limit, if_none_match)
    response = Response(answer.body, status_code=answer.status)
    response.raw_headers = list(answer.headers)
    return response


# The route object itself: the lean path labels its requests with it (metrics, logs).
FEED_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == "/feed")
