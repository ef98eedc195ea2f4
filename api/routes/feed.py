"""``GET /feed``: newest questions first, filtered, keyset-paginated.

Reads the feed read model only (``feed.questions``), never the write tables. A row
exists before its ``question.created`` event when an answer arrived first; such rows
have no title yet and are not shown.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Select, select, tuple_

from api import cursor as cursors
from api.deps import FeedSession, SettingsDep
from api.errors import validation_error
from api.schemas import FeedItem, FeedPage
from outbox.events import Grade, Slug
from outbox.models import FeedQuestion

router = APIRouter(tags=["feed"])

DEFAULT_LIMIT = 20
F = FeedQuestion
_COLUMNS = (
    F.question_id,
    F.title,
    F.subject,
    F.grade,
    F.answered,
    F.answer_count,
    F.created_at,
    F.last_answer_at,
)


def _query(
    subject: str | None,
    grade: int | None,
    answered: bool | None,
    after: cursors.Position | None,
    limit: int,
) -> Select[*tuple[Any, ...]]:
    query = select(*_COLUMNS).where(F.title.is_not(None), F.created_at.is_not(None))
    if subject is not None:
        query = query.where(F.subject == subject)
    if grade is not None:
        query = query.where(F.grade == grade)
    if answered is not None:
        query = query.where(F.answered.is_(answered))
    if after is not None:
        # Row comparison matches the (created_at DESC, question_id DESC) index order.
        query = query.where(
            tuple_(F.created_at, F.question_id) < tuple_(after.created_at, after.question_id)
        )
    return query.order_by(F.created_at.desc(), F.question_id.desc()).limit(limit)


@router.get("/feed", response_model=FeedPage, responses={422: {"description": "Invalid filter"}})
async def get_feed(
    session: FeedSession,
    settings: SettingsDep,
    subject: Annotated[Slug | None, Query(description="lowercase slug")] = None,
    grade: Annotated[Grade | None, Query(description="1-12")] = None,
    answered: Annotated[bool | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, description="page size (capped)")] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> FeedPage:
    """Questions newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    cap = settings.api_feed_max_limit
    if limit is None:
        limit = min(DEFAULT_LIMIT, cap)
    elif limit > cap:
        raise validation_error(
            ("query", "limit"), f"Input should be less than or equal to {cap}", "less_than_equal"
        )
    after = None
    if cursor is not None:
        try:
            after = cursors.decode(cursor)
        except cursors.InvalidCursor as exc:
            raise validation_error(("query", "cursor"), str(exc), "invalid_cursor") from exc
    rows = (await session.execute(_query(subject, grade, answered, after, limit + 1))).all()
    items = [FeedItem.model_validate(row._mapping) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = cursors.encode(cursors.Position(last.created_at, last.question_id))
    return FeedPage(items=items, next_cursor=next_cursor)
