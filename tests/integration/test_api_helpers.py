"""Shared fixtures and helpers for the API integration tests (no tests in here).

Test modules import the fixtures as ``client_fixture``/``user_fixture``; pytest knows
them as ``client`` and ``user``.

The app runs in-process through ``httpx.ASGITransport`` with its lifespan entered, so
its engines really connect to the session's PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from api.app import create_app
from outbox.settings import Settings
from outbox.tokens import hash_token, new_token


@dataclass(frozen=True)
class User:
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(db: Engine, *, revoked: bool = False) -> User:
    name = f"user-{uuid.uuid4().hex[:12]}"
    token = new_token()
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO qa.api_tokens (user_name, token_hash, revoked_at) "
                "VALUES (:u, :h, CASE WHEN :r THEN now() END)"
            ),
            {"u": name, "h": hash_token(token), "r": revoked},
        )
    return User(name, token)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``create_app(settings)`` with its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture(name="client")
async def client_fixture(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as c:
        yield c


@pytest.fixture(name="user")
def user_fixture(db: Engine) -> User:
    return make_user(db)


def question_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "Why is the sky blue?",
        "body": "Asking for a friend.",
        "subject": f"physics-{uuid.uuid4().hex[:8]}",
        "grade": 7,
    }
    payload.update(overrides)
    return payload


async def post_question(client: httpx.AsyncClient, user: User, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/questions", json=question_payload(**overrides), headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def outbox_rows(db: Engine, question_id: str, event_type: str | None = None) -> list[Any]:
    """Outbox rows of one question (both event kinds use the question as aggregate)."""
    sql = "SELECT event_id, event_type, body FROM qa.outbox WHERE aggregate_id = :a"
    params: dict[str, Any] = {"a": str(question_id)}
    if event_type is not None:
        sql += " AND event_type = :t"
        params["t"] = event_type
    with db.connect() as conn:
        return list(conn.execute(text(sql + " ORDER BY id"), params))


def count(db: Engine, sql: str, **params: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())
