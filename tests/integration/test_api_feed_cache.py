"""``GET /feed`` through its page cache: ETag/304, the staleness bound, no sharing between
different pages, cursors, and a body identical to what ``FeedPage`` serialises.

The app's cache gets a hand-driven clock, so "within the TTL" and "after the TTL" are
decided by the test, never by real time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from api.app import create_app
from api.feed_cache import FeedCache
from api.feed_pages import FeedPages
from api.schemas import FeedPage
from outbox.settings import Settings
from tests.integration.test_api_feed import all_pages, newest_first, seed

TTL = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi"])
async def client(
    settings: Settings, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a controllable clock, both ways in (lean path and FastAPI route)."""
    app = create_app(
        settings.model_copy(
            update={"api_feed_cache_seconds": TTL, "api_feed_fast_path": request.param}
        )
    )
    async with app.router.lifespan_context(app):
        app.state.feed = FeedPages(app.state.feed.reader, FeedCache(TTL, 1000, clock=clock))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


@pytest.fixture
def subject() -> str:
    return f"cache-{uuid.uuid4().hex[:12]}"


def ids(response: httpx.Response) -> list[str]:
    return [item["question_id"] for item in response.json()["items"]]


async def test_etag_and_304(client: httpx.AsyncClient, db: Engine, subject: str) -> None:
    seed(db, subject, 3)
    first = await client.get("/feed", params={"subject": subject})
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"')
    assert first.headers["cache-control"] == "public, max-age=5"

    again = await client.get("/feed", params={"subject": subject}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=5"

    listed = await client.get(
        "/feed", params={"subject": subject}, headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304
    stale = await client.get(
        "/feed", params={"subject": subject}, headers={"If-None-Match": '"other"'}
    )
    assert stale.status_code == 200 and stale.content == first.content


async def test_changes_show_after_the_ttl_and_not_before(
    client: httpx.AsyncClient, db: Engine, subject: str, clock: Clock
) -> None:
    rows = seed(db, subject, 2)
    before = await client.get("/feed", params={"subject": subject})
    newer = seed(db, subject, 1)  # created_at ties with rows[0]; order by id decides
    expected = newest_first(rows + newer)

    clock.now += TTL - 0.01
    cached = await client.get("/feed", params={"subject": subject})
    assert ids(cached) == ids(before) == newest_first(rows)
    assert cached.headers["etag"] == before.headers["etag"]

    clock.now += 0.01
    fresh = await client.get("/feed", params={"subject": subject})
    assert ids(fresh) == expected
    assert fresh.headers["etag"] != before.headers["etag"]
    old_tag = await client.get(
        "/feed", params={"subject": subject}, headers={"If-None-Match": before.headers["etag"]}
    )
    assert old_tag.status_code == 200


async def test_etag_is_stable_across_refills_of_an_unchanged_page(
    client: httpx.AsyncClient, db: Engine, subject: str, clock: Clock
) -> None:
    seed(db, subject, 2)
    first = await client.get("/feed", params={"subject": subject})
    clock.now += TTL * 3
    refilled = await client.get(
        "/feed", params={"subject": subject}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert refilled.status_code == 304


async def test_different_pages_never_share_an_entry(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    """All requests fall within one TTL: each must still get exactly its own page."""
    rows = seed(db, subject, 12)

    def expect(**where: Any) -> list[str]:
        chosen = [r for r in rows if all(_matches(r, k, v) for k, v in where.items())]
        return newest_first(chosen)

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, expect()),
        ({"grade": 1}, expect(grade=1)),
        ({"grade": 2}, expect(grade=2)),
        ({"answered": "true"}, expect(answered=True)),
        ({"answered": "false"}, expect(answered=False)),
        ({"grade": 2, "answered": "true"}, expect(grade=2, answered=True)),
        ({"limit": 3}, expect()[:3]),
        ({"limit": 4}, expect()[:4]),
    ]
    for _ in range(2):  # second round: every page served from the cache
        for params, expected in cases:
            response = await client.get("/feed", params={"subject": subject, **params})
            assert ids(response) == expected, params
    other = f"{subject}-x"
    assert ids(await client.get("/feed", params={"subject": other})) == []


async def test_cursor_pages_are_right_from_the_cache(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    rows = seed(db, subject, 23, same_time_every=4)
    for _ in range(2):
        items, pages = await all_pages(client, subject=subject, limit=5)
        assert [i["question_id"] for i in items] == newest_first(rows)
        assert pages == 5
    answered, _ = await all_pages(client, subject=subject, answered="true", limit=2)
    assert [i["question_id"] for i in answered] == newest_first(
        [r for r in rows if r["answer_count"] > 0]
    )


async def test_body_is_exactly_what_the_schema_serialises(
    client: httpx.AsyncClient, db: Engine, subject: str
) -> None:
    seed(db, subject, 3)
    with db.begin() as conn:  # microseconds and a NULL last_answer_at both appear
        conn.execute(
            text(
                "UPDATE feed.questions SET created_at = created_at + interval '123 microseconds'"
                " WHERE subject = :s AND answer_count = 0"
            ),
            {"s": subject},
        )
    response = await client.get("/feed", params={"subject": subject, "limit": 2})
    assert response.headers["content-type"] == "application/json"
    page = FeedPage.model_validate_json(response.content)
    assert page.model_dump_json().encode() == response.content
    assert page.next_cursor is not None


def _matches(row: dict[str, Any], key: str, value: Any) -> bool:
    if key == "answered":
        return (row["answer_count"] > 0) is value
    return bool(row[key] == value)


async def test_cache_off_reads_every_time(settings: Settings, db: Engine, subject: str) -> None:
    app = create_app(settings.model_copy(update={"api_feed_cache_seconds": 0}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            rows = seed(db, subject, 1)
            first = await c.get("/feed", params={"subject": subject})
            more = seed(db, subject, 1)
            second = await c.get("/feed", params={"subject": subject})
            assert first.headers["cache-control"] == "no-cache"
            assert ids(second) == newest_first(rows + more)
            again = await c.get(
                "/feed",
                params={"subject": subject},
                headers={"If-None-Match": second.headers["etag"]},
            )
            assert again.status_code == 304
