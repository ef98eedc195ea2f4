"""PATCH /questions/{id}: the author's edit and its question.edited event, one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from outbox.events import AnswerCreatedV2, QuestionEditedV1, decode
from tests.integration.test_api_helpers import (  # noqa: F401 (fixtures)
    User,
    client_fixture,
    count,
    make_user,
    outbox_rows,
    post_question,
    user_fixture,
)


def _events(db: Engine, qid: str, event_type: str | None = None) -> list[Any]:
    return [decode(row.body) for row in outbox_rows(db, qid, event_type)]


def _last_sequence(db: Engine, qid: str) -> int:
    return count(db, "SELECT last_sequence FROM qa.questions WHERE id = :q", q=qid)


async def test_author_edit_changes_the_question_and_emits_the_new_state(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user, grade=7)
    url = f"/questions/{question['id']}"

    response = await client.patch(url, json={"title": "Why is the sea blue?"}, headers=user.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {**question, "title": "Why is the sea blue?"}
    assert (await client.get(url)).json()["title"] == "Why is the sea blue?"
    [edited] = _events(db, question["id"], "question.edited")
    assert (edited.envelope.version, edited.envelope.sequence) == (1, 2)
    assert edited.envelope.aggregate_id == question["id"]
    assert isinstance(edited.data, QuestionEditedV1)
    assert edited.data.changed == ["title"]
    # The full state subscribers keep, not only the changed field.
    assert (edited.data.title, edited.data.subject, edited.data.grade) == (
        "Why is the sea blue?",
        question["subject"],
        7,
    )
    assert _last_sequence(db, question["id"]) == 2


async def test_body_and_grade_edit_lists_both_fields_and_leaves_the_body_out(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    patch = {"grade": 9, "body": "A much longer explanation."}
    response = await client.patch(f"/questions/{question['id']}", json=patch, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "A much longer explanation."
    [edited] = _events(db, question["id"], "question.edited")
    assert edited.data.changed == ["body", "grade"]  # type: ignore[attr-defined]
    assert "body" not in edited.envelope.data
    assert b"much longer" not in outbox_rows(db, question["id"], "question.edited")[0].body


async def test_another_user_gets_403_and_nothing_changes(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    intruder = make_user(db)
    response = await client.patch(
        f"/questions/{question['id']}", json={"title": "Mine now"}, headers=intruder.headers
    )
    assert response.status_code == 403
    assert (await client.get(f"/questions/{question['id']}")).json()["title"] == question["title"]
    assert _events(db, question["id"], "question.edited") == []
    assert _last_sequence(db, question["id"]) == 1


async def test_unknown_question_is_404_and_no_token_is_401(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    missing = uuid.uuid4()
    response = await client.patch(f"/questions/{missing}", json={"grade": 2}, headers=user.headers)
    assert response.status_code == 404
    assert outbox_rows(db, str(missing)) == []
    assert (await client.patch(f"/questions/{missing}", json={"grade": 2})).status_code == 401


@pytest.mark.parametrize(
    "patch",
    [
        {},
        {"title": None},
        {"title": ""},
        {"grade": 13},
        {"subject": "Not A Slug"},
        {"author": "mallory"},
        {"title": "ok", "created_at": "2020-01-01T00:00:00Z"},
        {"body": "a\x00b"},
        ["title"],
    ],
)
async def test_invalid_or_empty_patch_is_422_and_writes_nothing(
    client: httpx.AsyncClient, user: User, db: Engine, patch: object
) -> None:
    question = await post_question(client, user)
    response = await client.patch(f"/questions/{question['id']}", json=patch, headers=user.headers)
    assert response.status_code == 422, response.text
    shown = (await client.get(f"/questions/{question['id']}")).json()
    assert shown == {**question, "answers": [], "next_cursor": None}
    assert _events(db, question["id"], "question.edited") == []


async def test_a_patch_that_changes_nothing_emits_nothing(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    same = {"title": question["title"], "grade": question["grade"]}
    response = await client.patch(f"/questions/{question['id']}", json=same, headers=user.headers)
    assert response.status_code == 200
    assert response.json() == question
    assert _events(db, question["id"], "question.edited") == []
    assert _last_sequence(db, question["id"]) == 1


async def test_idempotency_key_replays_the_edit_once_and_refuses_another_patch(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    url = f"/questions/{question['id']}"
    headers = {**user.headers, "Idempotency-Key": f"edit-{uuid.uuid4()}"}
    first = await client.patch(url, json={"title": "Edited once"}, headers=headers)
    # Someone edits in between: the retry must still answer what the first request did.
    await client.patch(url, json={"grade": 1}, headers=user.headers)
    again = await client.patch(url, json={"title": "Edited once"}, headers=headers)
    other = await client.patch(url, json={"title": "Something else"}, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other.status_code == 422
    assert len(_events(db, question["id"], "question.edited")) == 2
    assert (await client.get(url)).json()["title"] == "Edited once"


@pytest.fixture
def failing_edit_outbox(db: Engine) -> Iterator[Any]:
    """An AFTER trigger failing the question.edited outbox insert of one question once the
    edited title is already visible to it (the failure comes after the update)."""
    name = f"fail_edit_{uuid.uuid4().hex[:10]}"

    def arm(question_id: str, title: str) -> None:
        with db.begin() as conn:
            conn.execute(
                text(f"""
                CREATE FUNCTION qa.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM qa.questions
                               WHERE id = NEW.aggregate_id::uuid AND title = '{title}') THEN
                        RAISE EXCEPTION 'injected outbox failure';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER {name} AFTER INSERT ON qa.outbox FOR EACH ROW
                WHEN (NEW.event_type = 'question.edited' AND NEW.aggregate_id = '{question_id}')
                EXECUTE FUNCTION qa.{name}();
                """)
            )

    yield arm
    with db.begin() as conn:
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON qa.outbox"))
        conn.execute(text(f"DROP FUNCTION IF EXISTS qa.{name}()"))


async def test_failed_event_insert_rolls_the_edit_back(
    client: httpx.AsyncClient, user: User, db: Engine, failing_edit_outbox: Any
) -> None:
    question = await post_question(client, user)
    failing_edit_outbox(question["id"], "Lost edit")
    headers = {**user.headers, "Idempotency-Key": f"edit-{uuid.uuid4()}"}
    response = await client.patch(
        f"/questions/{question['id']}", json={"title": "Lost edit"}, headers=headers
    )
    assert response.status_code == 500
    assert (await client.get(f"/questions/{question['id']}")).json()["title"] == question["title"]
    assert _events(db, question["id"], "question.edited") == []
    assert _last_sequence(db, question["id"]) == 1
    key = headers["Idempotency-Key"]
    assert count(db, "SELECT count(*) FROM qa.idempotency_keys WHERE key = :k", k=key) == 0


async def test_concurrent_edits_and_answers_get_distinct_increasing_sequences(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    url = f"/questions/{question['id']}"
    titles = [f"Title {i}" for i in range(8)]
    edits = [client.patch(url, json={"title": t}, headers=user.headers) for t in titles]
    answers = [
        client.post(f"{url}/answers", json={"body": f"a{i}"}, headers=user.headers)
        for i in range(4)
    ]
    responses = await asyncio.gather(*edits, *answers)
    assert [r.status_code for r in responses] == [200] * 8 + [201] * 4

    events = _events(db, question["id"])
    sequences = [e.envelope.sequence for e in events]
    assert sorted(sequences) == list(range(1, 14))  # type: ignore[type-var]
    assert _last_sequence(db, question["id"]) == 13
    edited = sorted(
        (e for e in events if e.envelope.type == "question.edited"),
        key=lambda e: e.envelope.sequence or 0,
    )
    # The committed title is the one of the edit with the highest sequence, and every
    # answer carries the title that was current at its own sequence.
    assert (await client.get(url)).json()["title"] == edited[-1].data.title  # type: ignore[attr-defined]
    title_at = {e.envelope.sequence: e.data.title for e in edited}  # type: ignore[attr-defined]
    title_at[1] = question["title"]
    for event in events:
        if isinstance(event.data, AnswerCreatedV2):
            seq = event.envelope.sequence or 0
            expected = title_at[max(s for s in title_at if s < seq)]
            assert event.data.question.title == expected
