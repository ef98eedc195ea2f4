"""Templates, the console's error pages, and small request helpers shared by the routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
HTMX = "htmx-2.0.11.min.js"
templates = Jinja2Templates(directory=str(HERE / "templates"))


class ConsoleError(Exception):
    """Rendered as an HTML page with ``status`` (401 sign in, 403 refused, 404, 422)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def _ago(value: object) -> str:
    if not isinstance(value, datetime):
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "-"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


templates.env.filters["ago"] = _ago
templates.env.filters["when"] = _when
templates.env.filters["pretty"] = _pretty
templates.env.globals["htmx"] = HTMX


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``name`` with the signed-in operator (if any) and their CSRF token."""
    session = getattr(request.state, "session", None)
    context.setdefault("operator", getattr(request.state, "operator", None))
    context.setdefault("csrf", session.csrf if session is not None else "")
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def on_console_error(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, ConsoleError)
    response = page(
        request, "error.html", exc.status, title=exc.title, message=exc.message, code=exc.status
    )
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="qa-console"'
    return response
