"""``GET /feed``: filters, newest-first order, keyset pagination, cursor validation.

Rows are seeded straight into the read model (``feed.questions``) under a subject unique
to the test, so tests never see each other's rows.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.integration.test_api_helpers import client_fixture  # noqa: F401 (fixture)

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def seed(db: Engine, subject: str, n: int, *, same_time_every: int = 1) -> list[dict[str, Any]]:
    """``n`` feed rows; every ``same_time_every`` rows share a created_at (ties by id)."""
    rows = []
    for i in range(n):
        answers = i % 3
        rows.append(
            {
                "question_id": uuid.uuid4(),
                "title": f"question {i}",
                "subject": subject,
                "grade": 1 + i % 2,
                "created_at": BASE + timedelta(seconds=i // same_time_every),
                "answer_count": answers,
                "last_answer_at": BASE + timedelta(hours=1) if answers else None,
            }
        )
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feed.questions (question_id, title, subject, grade, created_at,"
                " answer_count, last_answer_at) VALUES (:question_id, :title, :subject, :grade,"
                " :created_at, :answer_count, :last_answer_at)"
            ),
            rows,
        )
    return rows


def newest_first(rows: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(rows, key=lambda r: (r["created_at"], r["question_id"]), reverse=True)
    return [str(r["question_id"]) for r in ordered]


async def all_pages(client: httpx.AsyncClient, **params: Any) -> tuple[list[dict], int]:
    items: list[dict] = []
    pages, cursor = 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/feed", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        assert pages < 100, "pagination does not terminate"
        if cursor is None:
            return items, pages


@pytest.fixture
def subject() -> str:
    return f"feed-{uuid.uuid4().hex[:12]}"


async def test_pages_cover_every_item_once_newest_first(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    rows = seed(db, subject, 23, same_time_every=4)  # ties on created_at across page edges

    items, pages = await all_pages(client, subject=subject, limit=5)

    assert [i["question_id"] for i in items] == newest_first(rows)
    assert pages == 5
    first = items[0]
    assert set(first) == {
        "question_id",
        "title",
        "subject",
        "grade",
        "answered",
        "answer_count",
        "created_at",
        "last_answer_at",
    }


async def test_filters_by_grade_and_answered(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    rows = seed(db, subject, 12)

    answered, _ = await all_pages(client, subject=subject, answered="true", limit=2)
    open_grade2, _ = await all_pages(client, subject=subject, answered="false", grade=2)

    assert [i["question_id"] for i in answered] == newest_first(
        [r for r in rows if r["answer_count"] > 0]
    )
    assert all(i["answered"] and i["answer_count"] > 0 for i in answered)
    assert [i["question_id"] for i in open_grade2] == newest_first(
        [r for r in rows if r["answer_count"] == 0 and r["grade"] == 2]
    )


async def test_rows_without_a_title_are_hidden(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    rows = seed(db, subject, 2)
    with db.begin() as conn:  # an answer arrived before its question.created
        conn.execute(
            text(
                "INSERT INTO feed.questions (question_id, subject, answer_count) VALUES (:q, :s, 1)"
            ),
            {"q": uuid.uuid4(), "s": subject},
        )
    items, _ = await all_pages(client, subject=subject)
    assert [i["question_id"] for i in items] == newest_first(rows)


async def test_default_limit_and_cap(client: httpx.AsyncClient, db: Engine, subject: str) -> None:
    seed(db, subject, 21)
    page = (await client.get("/feed", params={"subject": subject})).json()
    assert len(page["items"]) == 20 and page["next_cursor"]
    too_many = await client.get("/feed", params={"subject": subject, "limit": 101})
    assert too_many.status_code == 422
    assert (await client.get("/feed", params={"limit": 0})).status_code == 422


@pytest.mark.parametrize(
    "params",
    [{"subject": "Not A Slug"}, {"grade": 13}, {"answered": "maybe"}, {"limit": "x"}],
)
async def test_bad_filters_are_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert (await client.get("/feed", params=params)).status_code == 422


async def test_tampered_cursor_is_422(client: httpx.AsyncClient, db: Engine, subject: str) -> None:
    seed(db, subject, 3)
    cursor = (await client.get("/feed", params={"subject": subject, "limit": 1})).json()[
        "next_cursor"
    ]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    edited = raw.replace(b"2024", b"2025")
    forged = base64.urlsafe_b64encode(edited).decode().rstrip("=")
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for bad in (forged, flipped, "garbage", "%%%", "", "x" * 300, "\u00e9"):
        response = await client.get("/feed", params={"subject": subject, "cursor": bad})
        assert response.status_code == 422, (bad, response.text)
