"""GET /asyncapi.json and GET /asyncapi: the published events contract, served by the API."""

from __future__ import annotations

import re

import httpx

from outbox.asyncapi import render
from outbox.events import EVENT_SCHEMAS
from tests.integration.test_api_helpers import client_fixture  # noqa: F401 (fixture)


async def test_asyncapi_json_is_the_generated_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == render()
    assert response.json()["asyncapi"] == "3.0.0"


async def test_asyncapi_page_shows_every_event_and_loads_nothing_from_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/asyncapi")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for event_type, version in EVENT_SCHEMAS:
        assert f"{event_type} v{version}" in page
    for field in ("data.question.title", "data.changed", "sequence", "x-attempts"):
        assert f"<code>{field}</code>" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
