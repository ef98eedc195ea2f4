"""The lean ``GET /feed`` path answers exactly as the FastAPI route does.

Two apps on the same database, one with ``QA_API_FEED_FAST_PATH`` on (the default) and
one with it off, get the same raw query strings, hostile ones included: status, body
and every header but the request id must be identical. A third check proves the lean
path really answers (else the comparison would hold trivially): its requests never reach
the FastAPI route.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine

from api import cursor as cursors
from api.app import create_app
from api.feed_fast import parse
from api.feed_pages import Answer, FeedPages
from api.routes import feed as feed_route
from outbox.settings import Settings
from tests.integration.test_api_feed import seed

MAX_LIMIT = 30


@pytest.fixture
def subject() -> str:
    return f"fast-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def clients(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(lean path on, lean path off), cache off so both read the database every time."""
    out = []
    async with AsyncExitStack() as stack:
        for fast in (True, False):
            app = create_app(
                settings.model_copy(
                    update={
                        "api_feed_fast_path": fast,
                        "api_feed_cache_seconds": 0,
                        "api_feed_max_limit": MAX_LIMIT,
                    }
                )
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            out.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://api")
                )
            )
        yield out[0], out[1]


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


_NUMBERS = ["0", "13", "07", "+3", " 3", "3 ", "-1", "1e1", "3.0", "", "9" * 20, "٣"]


def _values(subject: str, cursor: str) -> dict[str, tuple[list[str], list[str]]]:
    """Per parameter: (plain values the lean path takes, near misses FastAPI must judge)."""
    other_kind = cursors.encode(cursors.decode(cursor), "answers")
    return {
        "subject": (
            [subject, "math", "a" * 40],
            ["Math", "a--b", "-a", "a" * 41, "", "é", f"{subject}\n"],
        ),
        "grade": (["1", "2", "12"], _NUMBERS),
        "answered": (["true", "false", "1", "0"], ["True", "yes", "off", "t", "", "2"]),
        "limit": (["1", "5", "30"], [*_NUMBERS, "31", "05"]),
        "cursor": ([cursor], [cursor[:-1], cursor + "A", "", "x" * 257, other_kind]),
        "other": (["x"], ["", "&"]),
    }


def _query(data: st.DataObject, subject: str, cursor: str) -> str:
    """Mostly plain values (three in four), so lean answers are common too."""
    draw = data.draw
    values = _values(subject, cursor)
    names = draw(st.lists(st.sampled_from(sorted(values)), max_size=6))
    parts = []
    for name in names:
        plain, odd = values[name]
        if draw(st.integers(0, 3)):
            value = draw(st.sampled_from(plain))
        else:
            value = draw(st.sampled_from(odd) | st.text(max_size=8))
        parts.append(f"{quote(name)}={quote(value, safe='')}")
    if draw(st.integers(0, 7)) == 0:
        parts.append(draw(st.sampled_from(["subject", "grade&grade=1", "=", "&&", "%zz=1"])))
    return "&".join(parts)


async def test_both_ways_in_answer_alike(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], db: Engine, subject: str
) -> None:
    fast, slow = clients
    seed(db, subject, 45, same_time_every=3)
    first = await slow.get("/feed", params={"subject": subject, "limit": 5})
    cursor = first.json()["next_cursor"]
    assert cursor

    queries: list[str] = []

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        queries.append(_query(data, subject, cursor))

    collect()
    assert len(queries) >= 100
    # Every value of every parameter alone, and beside plain values of all the others.
    values = _values(subject, cursor)
    for name, (plain, odd) in values.items():
        others = "&".join(f"{k}={quote(v[0][-1], safe='')}" for k, v in values.items() if k != name)
        for value in plain + odd:
            single = f"{name}={quote(value, safe='')}"
            queries += [single, f"{others}&{single}"]
    answered_by_fast_path = 0
    for query in queries:
        path = "/feed" + ("?" + query if query else "")
        a, b = await fast.get(path), await slow.get(path)
        assert _comparable(a) == _comparable(b), path
        answered_by_fast_path += parse(query, MAX_LIMIT) is not None
    # Both kinds really occurred: lean answers and hand-overs to FastAPI (422s included).
    assert answered_by_fast_path >= 20
    assert len(queries) - answered_by_fast_path >= 20


async def test_etag_304_alike(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], db: Engine, subject: str
) -> None:
    fast, slow = clients
    seed(db, subject, 3)
    etag = (await slow.get("/feed", params={"subject": subject})).headers["etag"]
    for if_none_match in (etag, f"W/{etag}", '"other"', "*", f'"x", {etag}'):
        headers = {"If-None-Match": if_none_match}
        a = await fast.get("/feed", params={"subject": subject}, headers=headers)
        b = await slow.get("/feed", params={"subject": subject}, headers=headers)
        assert _comparable(a) == _comparable(b)


async def test_lean_path_does_not_reach_the_route(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    db: Engine,
    subject: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, _ = clients
    seed(db, subject, 3)
    calls: list[tuple[Any, ...]] = []
    original = FeedPages.answer

    async def counting(self: FeedPages, *args: Any) -> Answer:
        calls.append(args)
        return await original(self, *args)

    route_calls: list[tuple[Any, ...]] = []

    def page_limit(*args: Any) -> int:
        route_calls.append(args)
        return 20

    monkeypatch.setattr(FeedPages, "answer", counting)
    monkeypatch.setattr(feed_route, "page_limit", page_limit)
    assert (await fast.get("/feed", params={"subject": subject})).status_code == 200
    assert len(calls) == 1 and route_calls == []
    # A request the lean path does not take goes through the route.
    odd = await fast.get("/feed", params={"subject": subject, "answered": "yes"})
    assert odd.status_code == 200
    assert len(calls) == 2 and len(route_calls) == 1
