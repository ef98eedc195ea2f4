"""Keyset paging parameters shared by ``GET /feed`` and ``GET /questions/{id}``: the page
size (defaulted, capped with a 422 rather than silently) and the decoded cursor."""

from __future__ import annotations

from api import cursor as cursors
from api.errors import validation_error


def page_limit(limit: int | None, default: int, cap: int) -> int:
    """``limit`` or the default; above ``cap`` is a 422 (a client must know it got less)."""
    if limit is None:
        return min(default, cap)
    if limit > cap:
        raise validation_error(
            ("query", "limit"), f"Input should be less than or equal to {cap}", "less_than_equal"
        )
    return limit


def after(cursor: str | None, kind: cursors.Kind) -> cursors.Position | None:
    """The position a cursor continues after; a cursor not made by us (or for another
    kind of page) is a 422."""
    if cursor is None:
        return None
    try:
        return cursors.decode(cursor, kind)
    except cursors.InvalidCursor as exc:
        raise validation_error(("query", "cursor"), str(exc), "invalid_cursor") from exc
