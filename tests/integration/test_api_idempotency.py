"""``Idempotency-Key``: a retry returns the original result and creates nothing new."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import Engine

from tests.integration.test_api_helpers import (  # noqa: F401 (fixtures)
    User,
    client_fixture,
    count,
    make_user,
    outbox_rows,
    post_question,
    question_payload,
    user_fixture,
)


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4()}"}


async def test_answer_retry_returns_the_same_answer_and_creates_nothing(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    url, headers = f"/questions/{question['id']}/answers", {**user.headers, **_key()}

    first = await client.post(url, json={"body": "42"}, headers=headers)
    again = await client.post(
        url, content=b'{ "body" :  "42" }', headers={**headers, "Content-Type": "application/json"}
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    qid = question["id"]
    assert count(db, "SELECT count(*) FROM qa.answers WHERE question_id = :q", q=qid) == 1
    assert len(outbox_rows(db, qid, "answer.created")) == 1


async def test_question_retry_returns_the_same_question(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    payload, headers = question_payload(), {**user.headers, **_key()}
    first = await client.post("/questions", json=payload, headers=headers)
    again = await client.post("/questions", json=payload, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    subject = payload["subject"]
    assert count(db, "SELECT count(*) FROM qa.questions WHERE subject = :s", s=subject) == 1
    assert len(outbox_rows(db, first.json()["id"])) == 1


async def test_same_key_with_a_different_request_is_422(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    other = await post_question(client, user)
    headers = {**user.headers, **_key()}
    url = f"/questions/{question['id']}/answers"
    assert (await client.post(url, json={"body": "one"}, headers=headers)).status_code == 201

    changed_body = await client.post(url, json={"body": "two"}, headers=headers)
    other_question = await client.post(
        f"/questions/{other['id']}/answers", json={"body": "one"}, headers=headers
    )

    for response in (changed_body, other_question):
        assert response.status_code == 422
        assert "Idempotency-Key" in response.text
    assert count(db, "SELECT count(*) FROM qa.answers WHERE question_id = :q", q=other["id"]) == 0
    assert (
        count(db, "SELECT count(*) FROM qa.answers WHERE question_id = :q", q=question["id"]) == 1
    )


async def test_keys_are_scoped_per_user(client: httpx.AsyncClient, user: User, db: Engine) -> None:
    question = await post_question(client, user)
    someone = make_user(db)
    key = _key()
    url = f"/questions/{question['id']}/answers"
    mine = await client.post(url, json={"body": "same"}, headers={**user.headers, **key})
    theirs = await client.post(url, json={"body": "same"}, headers={**someone.headers, **key})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["author"] == someone.name


async def test_concurrent_requests_with_one_key_create_one_answer(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    url, headers = f"/questions/{question['id']}/answers", {**user.headers, **_key()}

    responses = await asyncio.gather(
        *(client.post(url, json={"body": "race"}, headers=headers) for _ in range(12))
    )

    assert [r.status_code for r in responses] == [201] * 12
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 11
    qid = question["id"]
    assert count(db, "SELECT count(*) FROM qa.answers WHERE question_id = :q", q=qid) == 1
    assert len(outbox_rows(db, qid, "answer.created")) == 1


async def test_a_failed_write_does_not_burn_its_key(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    headers = {**user.headers, **_key()}
    missing = await client.post(
        f"/questions/{uuid.uuid4()}/answers", json={"body": "x"}, headers=headers
    )
    assert missing.status_code == 404
    key = headers["Idempotency-Key"]
    assert count(db, "SELECT count(*) FROM qa.idempotency_keys WHERE key = :k", k=key) == 0
