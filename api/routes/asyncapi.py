"""``GET /asyncapi.json`` (the AsyncAPI 3.0 document of qa.events) and ``GET /asyncapi``."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from api.asyncapi_page import render_page
from outbox.asyncapi import document, render

router = APIRouter(tags=["events"])


@cache
def _json() -> bytes:
    return render()


@cache
def _html() -> str:
    return render_page(document())


@router.get("/asyncapi.json", response_class=Response)
async def asyncapi_json() -> Response:
    """The AsyncAPI 3.0 document of the events on ``qa.events`` (same as docs/asyncapi.json)."""
    return Response(_json(), media_type="application/json")


@router.get("/asyncapi", response_class=HTMLResponse)
async def asyncapi_page() -> HTMLResponse:
    """The same document as a readable page (no scripts, nothing loaded from elsewhere)."""
    return HTMLResponse(_html())
