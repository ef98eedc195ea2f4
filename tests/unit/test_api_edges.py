"""Pure pieces of the API edge: cursor codec, error shaping, failure classification,
body limit and request id middleware (driven by a fake ASGI app, no services)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from starlette.types import Message, Receive, Scope, Send

from api import cursor
from api.body_limit import BodyLimitMiddleware
from api.errors import ErrorMiddleware, field_errors, is_unavailable
from api.request_id import RequestIdMiddleware


def test_cursor_round_trips_and_rejects_edits() -> None:
    pos = cursor.Position(datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    token = cursor.encode(pos)
    assert cursor.decode(token) == pos
    for i in range(len(token)):  # any single-character edit is caught
        edited = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(cursor.InvalidCursor):
            cursor.decode(edited)
    for junk in ("", "=", "é", "a" * 500, "MXwyfDM"):
        with pytest.raises(cursor.InvalidCursor):
            cursor.decode(junk)


def test_field_errors_never_echo_input_and_are_encodable() -> None:
    errors = [
        {"loc": ("body", "\ud800" + "k" * 500), "msg": "bad\x00", "type": "x", "input": "secret"},
        *({"loc": ("body", i), "msg": "m", "type": "t"} for i in range(100)),
    ]
    shaped = field_errors(errors)
    assert len(shaped) == 20
    assert "input" not in shaped[0] and "secret" not in json.dumps(shaped)
    json.dumps(shaped, ensure_ascii=False).encode("utf-8")  # no lone surrogate left
    assert len(shaped[0]["loc"][1]) < 200 and "\x00" not in shaped[0]["msg"]


def test_unavailable_means_connection_or_timeout_not_any_db_error() -> None:
    lost = sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("conn refused"))
    raised = sa_exc.InternalError("INSERT", {}, psycopg.errors.RaiseException("boom"))
    unique = sa_exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("dup"))
    assert is_unavailable(lost)
    assert is_unavailable(sa_exc.TimeoutError("pool"))
    assert is_unavailable(ConnectionRefusedError())
    assert not is_unavailable(raised)
    assert not is_unavailable(unique)
    assert not is_unavailable(ValueError("bug"))


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "path": "/x", "headers": headers or []}


def _body(chunks: list[bytes]) -> Receive:
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    receive.pulled = lambda: pulled  # type: ignore[attr-defined]
    return receive


async def _reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive())["more_body"]:
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_body_limit_by_content_length_does_not_call_the_app() -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    sent = Recorder()
    await BodyLimitMiddleware(app, 10)(_scope([(b"content-length", b"11")]), _body([b""]), sent)
    assert sent.status == 413 and not called
    bad = Recorder()
    await BodyLimitMiddleware(app, 10)(_scope([(b"content-length", b"-1")]), _body([b""]), bad)
    assert bad.status == 400


async def test_body_limit_counts_a_chunked_body_and_stops_reading() -> None:
    receive = _body([b"x" * 6] * 100)
    sent = Recorder()
    await BodyLimitMiddleware(_reading_app, 10)(_scope(), receive, sent)
    assert sent.status == 413
    assert receive.pulled() == 2  # type: ignore[attr-defined]

    ok = Recorder()
    await BodyLimitMiddleware(_reading_app, 12)(_scope(), _body([b"x" * 6] * 2), ok)
    assert ok.status == 200


async def test_error_middleware_hides_details_and_sets_retry_after_for_503() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise sa_exc.OperationalError("SELECT secret", {}, psycopg.OperationalError("x"))

    async def buggy(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("SELECT password FROM users")

    app = RequestIdMiddleware(ErrorMiddleware(broken))
    sent = Recorder()
    await app(_scope([(b"x-request-id", b"rid-1")]), _body([b""]), sent)
    assert sent.status == 503 and sent.headers[b"retry-after"]
    assert sent.headers[b"x-request-id"] == b"rid-1"
    assert json.loads(sent.messages[1]["body"]) == {
        "detail": "service temporarily unavailable",
        "request_id": "rid-1",
    }

    sent = Recorder()
    await RequestIdMiddleware(ErrorMiddleware(buggy))(_scope(), _body([b""]), sent)
    assert sent.status == 500 and b"retry-after" not in sent.headers
    assert b"SELECT" not in sent.messages[1]["body"]
    assert (
        json.loads(sent.messages[1]["body"])["request_id"] == sent.headers[b"x-request-id"].decode()
    )
