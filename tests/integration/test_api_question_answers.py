"""``GET /questions/{id}`` pages its answers: keyset on (created_at, id), oldest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.integration.test_api_feed import seed as seed_feed
from tests.integration.test_api_helpers import client_fixture  # noqa: F401 (fixture)

BASE = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def seed(db: Engine, answers: int, *, same_time_every: int = 1) -> tuple[str, list[str]]:
    """A question with ``answers`` answers; every ``same_time_every`` share a created_at."""
    qid = uuid.uuid4()
    rows = [
        {
            "id": uuid.uuid4(),
            "q": qid,
            "body": f"answer {i}",
            "at": BASE + timedelta(seconds=i // same_time_every),
        }
        for i in range(answers)
    ]
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO qa.questions (id, title, body, subject, grade, author, created_at)"
                " VALUES (:q, 'paged', 'many answers', 'math', 5, 'ann', :at)"
            ),
            {"q": qid, "at": BASE},
        )
        if rows:
            conn.execute(
                text(
                    "INSERT INTO qa.answers (id, question_id, body, author, created_at)"
                    " VALUES (:id, :q, :body, 'bo', :at)"
                ),
                rows,
            )
    ordered = sorted(rows, key=lambda r: (r["at"], r["id"]))
    return str(qid), [str(r["id"]) for r in ordered]


async def pages(client: httpx.AsyncClient, qid: str, **params: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/questions/{qid}", params=query)
        assert response.status_code == 200, response.text
        out.append(response.json())
        cursor = out[-1]["next_cursor"]
        assert len(out) < 100, "paging does not terminate"
        if cursor is None:
            return out


async def test_answers_come_in_pages_oldest_first_each_once(
    client: httpx.AsyncClient, db: Engine
) -> None:
    qid, expected = seed(db, 7, same_time_every=3)  # ties on created_at across page edges
    got = await pages(client, qid, limit=3)
    assert [len(p["answers"]) for p in got] == [3, 3, 1]
    assert [a["id"] for p in got for a in p["answers"]] == expected
    assert all(p["id"] == qid and p["title"] == "paged" for p in got)


async def test_default_page_is_50_answers(client: httpx.AsyncClient, db: Engine) -> None:
    qid, expected = seed(db, 51)
    first = (await client.get(f"/questions/{qid}")).json()
    assert [a["id"] for a in first["answers"]] == expected[:50]
    rest = (await client.get(f"/questions/{qid}", params={"cursor": first["next_cursor"]})).json()
    assert [a["id"] for a in rest["answers"]] == expected[50:]
    assert rest["next_cursor"] is None


async def test_question_without_answers_has_no_cursor(
    client: httpx.AsyncClient, db: Engine
) -> None:
    qid, _ = seed(db, 0)
    page = (await client.get(f"/questions/{qid}")).json()
    assert page["answers"] == [] and page["next_cursor"] is None


async def test_an_answer_added_while_paging_appears_once(
    client: httpx.AsyncClient, db: Engine
) -> None:
    qid, expected = seed(db, 4)
    first = (await client.get(f"/questions/{qid}", params={"limit": 2})).json()
    late = uuid.uuid4()
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO qa.answers (id, question_id, body, author, created_at)"
                " VALUES (:id, :q, 'late', 'cy', :at)"
            ),
            {"id": late, "q": qid, "at": BASE + timedelta(hours=1)},
        )
    rest = await pages(client, qid, limit=2, cursor=first["next_cursor"])
    seen = [a["id"] for a in first["answers"]] + [a["id"] for p in rest for a in p["answers"]]
    assert seen == [*expected, str(late)]


@pytest.mark.parametrize("limit", [0, 101, "x"])
async def test_bad_limit_is_422(client: httpx.AsyncClient, db: Engine, limit: Any) -> None:
    qid, _ = seed(db, 1)
    response = await client.get(f"/questions/{qid}", params={"limit": limit})
    assert response.status_code == 422


async def test_foreign_or_tampered_cursor_is_422(client: httpx.AsyncClient, db: Engine) -> None:
    qid, _ = seed(db, 3)
    answers_cursor = (await client.get(f"/questions/{qid}", params={"limit": 1})).json()[
        "next_cursor"
    ]
    subject = f"paging-{uuid.uuid4().hex[:10]}"
    seed_feed(db, subject, 3)
    feed_cursor = (await client.get("/feed", params={"subject": subject, "limit": 1})).json()[
        "next_cursor"
    ]
    assert feed_cursor and answers_cursor
    flipped = answers_cursor[:-2] + ("A" if answers_cursor[-2] != "A" else "B") + answers_cursor[-1]
    for bad in (feed_cursor, flipped, "garbage"):
        response = await client.get(f"/questions/{qid}", params={"cursor": bad})
        assert response.status_code == 422, bad
    on_feed = await client.get("/feed", params={"subject": subject, "cursor": answers_cursor})
    assert on_feed.status_code == 422


async def test_unknown_question_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/questions/{uuid.uuid4()}", params={"limit": 5})
    assert response.status_code == 404
