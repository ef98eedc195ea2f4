"""The one place errors become HTTP responses.

* The service's own errors (:mod:`outbox.errors`) map to 401/403/404/422.
* Validation errors become 422 with field errors, without echoing the input (a lone
  surrogate or a megabyte of text must not come back, and could not be encoded anyway).
* Anything else is caught by :class:`ErrorMiddleware`: 503 with ``Retry-After`` when the
  database is unreachable or timed out, 500 otherwise. Their bodies carry a generic
  message and the request id only; the details go to the log with that id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi import TrackedSend
from api.request_id import request_id_of
from outbox.errors import Forbidden, IdempotencyConflict, NotFound, Unauthorized
from outbox.transient import is_transient

log = logging.getLogger("qa.api")

RETRY_AFTER_SECONDS = 5
_MAX_ERRORS = 20
_MAX_TEXT = 120


def is_unavailable(exc: BaseException) -> bool:
    """True for failures a retry may fix (503): the one classifier of the service,
    :func:`outbox.transient.is_transient` (database unreachable, connection lost, pool
    exhausted, timeouts, serialization failures, deadlocks)."""
    return is_transient(exc)


def _safe(value: object) -> object:
    """A value safe to put in a JSON response: printable, encodable, short."""
    if isinstance(value, int):
        return value
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as ``{loc, msg, type}`` without the offending input."""
    return [
        {
            "loc": [_safe(part) for part in err.get("loc", ())],
            "msg": _safe(err.get("msg", "invalid")),
            "type": _safe(err.get("type", "value_error")),
        }
        for err in list(errors)[:_MAX_ERRORS]
    ]


def validation_error(loc: tuple[str, ...], msg: str, type_: str = "value_error") -> Exception:
    """A 422 for a check made by hand (cursor, limit, Idempotency-Key reuse)."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": type_}])


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": field_errors(exc.errors())}, status_code=422)


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "not found"}, status_code=404)


async def _on_unauthorized(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc) or "a valid bearer token is required"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _on_forbidden(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc) or "forbidden"}, status_code=403)


async def _on_idempotency_conflict(request: Request, exc: Exception) -> JSONResponse:
    detail = [{"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "idempotency"}]
    return JSONResponse({"detail": detail}, status_code=422)


# FastAPI answers a body it cannot parse other than by a JSONDecodeError (too deeply
# nested, not UTF-8) with a bare 400; such a body is as invalid as any other.
_PARSE_FAILURE = "There was an error parsing the body"


def _parse_failure_reason(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "body is not UTF-8"
    return "JSON decode error"


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _PARSE_FAILURE:
        reason = _parse_failure_reason(exc.__cause__)
        detail = [{"loc": ["body"], "msg": reason, "type": "json_invalid"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(Unauthorized, _on_unauthorized)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(IdempotencyConflict, _on_idempotency_conflict)


class ErrorMiddleware:
    """Turns any uncaught exception into a 503 or 500 without details (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            rid = request_id_of(scope)
            where = f"{scope.get('method')} {scope.get('path')}"
            if is_unavailable(exc):
                first_line = (str(exc).splitlines() or [""])[0][:200]
                log.warning(
                    "database unavailable request_id=%s %s: %s: %s",
                    rid,
                    where,
                    type(exc).__name__,
                    first_line,
                )
                status, detail = 503, "service temporarily unavailable"
            else:
                log.exception("unhandled error request_id=%s %s", rid, where)
                status, detail = 500, "internal server error"
            if tracked.started:
                raise  # too late for a clean response; the server drops the connection
            await _send_error(send, status, detail, rid)


async def _send_error(send: Send, status: int, detail: str, rid: str) -> None:
    body = orjson.dumps({"detail": detail, "request_id": rid})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
