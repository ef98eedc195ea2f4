"""Hostile and invalid input: clear 4xx, never a 5xx, never the input echoed back."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import Engine

from outbox.settings import Settings
from tests.integration.test_api_helpers import (  # noqa: F401 (fixtures)
    User,
    client_fixture,
    make_user,
    post_question,
    question_payload,
    user_fixture,
)
from tests.support.console_data import make_token


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer qa_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["missing", "unknown", "wrong-scheme", "huge"],
)
async def test_writes_without_a_valid_token_are_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/questions", json=question_payload(), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_token_is_401(client: httpx.AsyncClient, db: Engine) -> None:
    revoked = make_user(db, revoked=True)
    response = await client.post("/questions", json=question_payload(), headers=revoked.headers)
    assert response.status_code == 401


async def test_operator_token_cannot_write_through_the_api(
    client: httpx.AsyncClient, db: Engine
) -> None:
    _, token = make_token(db, f"op-{uuid.uuid4().hex[:6]}", "operator")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.post("/questions", json=question_payload(), headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "overrides",
    [
        {"extra": 1},
        {"grade": 0},
        {"grade": 13},
        {"grade": "seven"},
        {"grade": 10**40},
        {"subject": "Physics"},
        {"subject": "phys ics"},
        {"subject": "a" * 41},
        {"title": ""},
        {"title": "t" * 201},
        {"body": "b" * 20_001},
        {"title": "nul\x00byte"},
    ],
    ids=lambda o: next(iter(o)) + "=" + repr(next(iter(o.values())))[:12],
)
async def test_invalid_question_fields_are_422_with_field_errors(
    client: httpx.AsyncClient, user: User, overrides: dict[str, object]
) -> None:
    response = await client.post(
        "/questions", json=question_payload(**overrides), headers=user.headers
    )
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert errors and all({"loc", "msg", "type"} <= set(e) for e in errors)
    assert next(iter(overrides)) in {str(part) for e in errors for part in e["loc"]}
    assert "input" not in errors[0]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"title": "\\ud800", "body": "b", "subject": "s", "grade": 1}',
        b'{"title": "t", "body": "x\\udfffy", "subject": "s", "grade": 1}',
        b'{"title": "t", "body": "\\u0000", "subject": "s", "grade": 1}',
        b'{"\\ud800": 1, "title": "t", "body": "b", "subject": "s", "grade": 1}',
        b'{"title": "t", "body": "b", "subject": "s", "grade": 1',
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe not utf-8",
        b"null",
    ],
    ids=["lone-high", "lone-low", "nul", "surrogate-key", "truncated", "deep", "bytes", "null"],
)
async def test_malformed_json_is_a_422_with_field_errors(
    client: httpx.AsyncClient, user: User, raw: bytes
) -> None:
    response = await client.post(
        "/questions",
        content=raw,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    # Every body-parse failure, a 5000-deep nesting included, has the same shape.
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert errors and all(set(e) == {"loc", "msg", "type"} for e in errors)
    assert errors[0]["loc"][0] == "body"


async def test_answer_validation_and_bad_uuid_are_422(
    client: httpx.AsyncClient, user: User
) -> None:
    question = await post_question(client, user)
    url = f"/questions/{question['id']}/answers"
    assert (await client.post(url, json={}, headers=user.headers)).status_code == 422
    assert (await client.post(url, json={"body": ""}, headers=user.headers)).status_code == 422
    extra = {"body": "x", "author": "mallory"}
    assert (await client.post(url, json=extra, headers=user.headers)).status_code == 422
    bad = await client.post(
        "/questions/not-a-uuid/answers", json={"body": "x"}, headers=user.headers
    )
    assert bad.status_code == 422
    assert (await client.get("/questions/not-a-uuid")).status_code == 422


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there", " leading"])
async def test_bad_idempotency_key_is_422(client: httpx.AsyncClient, user: User, key: str) -> None:
    response = await client.post(
        "/questions", json=question_payload(), headers={**user.headers, "Idempotency-Key": key}
    )
    assert response.status_code == 422


async def test_oversized_body_by_content_length_is_413(
    client: httpx.AsyncClient, user: User, settings: Settings
) -> None:
    big = question_payload(body="b" * (settings.api_max_body_bytes + 1))
    response = await client.post("/questions", json=big, headers=user.headers)
    assert response.status_code == 413
    assert "X-Request-ID" in response.headers


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient, user: User) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"title": "t", "subject": "s", "grade": 1, "body": "'
        for _ in range(1000):  # 1 MB (over the limit) unless the server stops reading
            sent += 1
            yield b"b" * 1024
        yield b'"}'

    response = await client.post(
        "/questions",
        content=chunks(),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert sent < 1000  # the body was refused while streaming, not after buffering it all


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) >= 16
    kept = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    insane = await client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "z" * 300})
    assert insane.headers["X-Request-ID"] not in {"", "a b\tc" + "z" * 300}
    missing = await client.get(f"/questions/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.headers["X-Request-ID"]


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get(f"/questions/{uuid.uuid4()}")
    text = (await client.get("/metrics")).text
    assert 'route="/questions/{question_id}"' in text
    assert 'status="404"' in text
    assert "qa_api_request_duration_seconds_bucket" in text


async def test_docs_and_redoc_load_their_assets_from_the_api(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, html
        # Nothing from another host (no CDN, no web fonts): the pages work offline.
        assert all(s.startswith("/docs-assets/") for s in sources), sources
        for src in sources:
            asset = await client.get(src)
            assert asset.status_code == 200 and len(asset.content) > 100, src
