"""``X-Request-ID`` on every response: a sane incoming id is kept, otherwise one is made.

Pure ASGI middleware, outermost in the stack, so even responses produced by other
middleware (413, 500, 503) carry the id. The id is also bound to the log context
(``outbox.logs``), so every log line written while the request runs carries it.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox import logs

HEADER = "X-Request-ID"
SCOPE_KEY = "qa.request_id"
_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_current: ContextVar[str] = ContextVar("qa_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being handled in this context (``-`` outside a request)."""
    return _current.get()


def request_id_of(scope: Scope) -> str:
    return str(scope.get(SCOPE_KEY) or _current.get())


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE.match(text) else None
    return None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 32 random hex digits, like uuid4().hex without building a UUID per request.
        rid = _incoming(scope) or os.urandom(16).hex()
        scope[SCOPE_KEY] = rid
        token = _current.set(rid)
        log_token = logs.bind_values(request_id=rid)
        raw = rid.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", raw))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.unbind(log_token)
            _current.reset(token)
