"""The lean way in for ``GET /feed``: well-formed requests answered without FastAPI.

The feed is the endpoint under heavy read traffic, and a cached page costs little next
to FastAPI's per-request work (parameter models, dependency solving, the response
machinery; measured in docs/BENCHMARKS.md). This pure ASGI middleware sits innermost in
the stack, so request ids, metrics, the access log and the error catch-all apply as to
any request. It answers a ``GET /feed`` itself only when every parameter it knows is in
its plain form:

- ``subject``: a slug (``^[a-z0-9]+(-[a-z0-9]+)*$``, at most 40 characters);
- ``grade``: ``1`` to ``12`` written without sign, space or leading zero;
- ``answered``: ``true``, ``false``, ``1`` or ``0``;
- ``limit``: ``1`` up to ``QA_API_FEED_MAX_LIMIT`` without leading zero;
- ``cursor``: at most 256 characters, one of ours for the feed;
- no parameter given twice.

Anything else (a 422 to explain, ``answered=yes``, a duplicate) goes on to the FastAPI
route, which stays the reference: it validates, answers errors and documents the
endpoint. Both ask :class:`api.feed_pages.FeedPages` for the page, so they answer alike;
a property test compares the two on arbitrary query strings. Unknown parameters are
ignored, as FastAPI ignores them.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api import cursor as cursors
from api.feed_pages import DEFAULT_LIMIT, FeedPages
from api.feed_query import FeedFilter

PATH = "/feed"
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SLUG_MAX = 40
_GRADES = {str(g): g for g in range(1, 13)}
_ANSWERED = {"true": True, "false": False, "1": True, "0": False}
_LIMIT = re.compile(r"[1-9][0-9]{0,5}")
_CURSOR_MAX = 256
_KNOWN = frozenset({"subject", "grade", "answered", "limit", "cursor"})

Parsed = tuple[FeedFilter, cursors.Position | None, int]


def parse(query: str, max_limit: int) -> Parsed | None:
    """The page a query string asks for, or ``None`` when FastAPI should decide."""
    seen: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _KNOWN:
            if name in seen:
                return None
            seen[name] = value
    subject = seen.get("subject")
    if subject is not None and (len(subject) > _SLUG_MAX or not _SLUG.fullmatch(subject)):
        return None
    grade = None
    if "grade" in seen:
        grade = _GRADES.get(seen["grade"])
        if grade is None:
            return None
    answered = None
    if "answered" in seen:
        answered = _ANSWERED.get(seen["answered"])
        if answered is None:
            return None
    limit = min(DEFAULT_LIMIT, max_limit)
    if "limit" in seen:
        if not _LIMIT.fullmatch(seen["limit"]):
            return None
        limit = int(seen["limit"])
        if limit > max_limit:
            return None
    after = None
    cursor = seen.get("cursor")
    if cursor is not None:
        if len(cursor) > _CURSOR_MAX:
            return None
        try:
            after = cursors.decode(cursor, "feed")
        except cursors.InvalidCursor:
            return None
    return FeedFilter(subject, grade, answered), after, limit


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return str(value.decode("latin-1"))
    return None


class FeedFastPath:
    """Answers well-formed ``GET /feed`` requests; passes everything else on."""

    def __init__(self, app: ASGIApp, max_limit: int, route: BaseRoute) -> None:
        self.app = app
        self.max_limit = max_limit
        # The FastAPI route of /feed: metrics and the access log label requests by it.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        parsed = parse(scope["query_string"].decode("latin-1"), self.max_limit)
        if parsed is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        pages: FeedPages = scope["app"].state.feed
        answer = await pages.answer(*parsed, _if_none_match(scope))
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
