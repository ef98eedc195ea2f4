"""Writes: a question or answer and its outbox event commit together, or neither does."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine, text

from bench.no_outbox import without_outbox
from outbox.events import AnswerCreatedV2, QuestionCreatedV1, decode
from outbox.settings import Settings
from tests.integration.test_api_helpers import (  # noqa: F401 (fixtures)
    User,
    client_fixture,
    count,
    outbox_rows,
    post_question,
    question_payload,
    running,
    user_fixture,
)


async def test_question_writes_one_outbox_row_with_the_event(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    created = await post_question(client, user, grade=11)
    assert created["author"] == user.name

    rows = outbox_rows(db, created["id"])
    assert len(rows) == 1
    event = decode(rows[0].body)
    assert rows[0].event_type == "question.created" == event.envelope.type
    assert rows[0].event_id == event.envelope.id
    assert event.envelope.sequence == 1
    assert isinstance(event.data, QuestionCreatedV1)
    assert str(event.data.question_id) == created["id"]
    assert event.data.author == user.name
    assert (event.data.title, event.data.subject, event.data.grade) == (
        created["title"],
        created["subject"],
        11,
    )


async def test_answer_writes_one_outbox_row_and_author_comes_from_the_token(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    question = await post_question(client, user)
    response = await client.post(
        f"/questions/{question['id']}/answers",
        json={"body": "Rayleigh scattering."},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["author"] == user.name
    assert answer["question_id"] == question["id"]

    rows = outbox_rows(db, question["id"], "answer.created")
    assert len(rows) == 1
    event = decode(rows[0].body)
    assert rows[0].event_id == event.envelope.id
    assert (event.envelope.version, event.envelope.sequence) == (2, 2)
    assert isinstance(event.data, AnswerCreatedV2)
    assert str(event.data.answer_id) == answer["id"]
    assert event.data.author == user.name
    # Event-carried state: the question as it is when the answer is written.
    state = event.data.question
    assert str(state.id) == question["id"]
    assert (state.title, state.subject, state.grade) == (
        question["title"],
        question["subject"],
        question["grade"],
    )

    shown = (await client.get(f"/questions/{question['id']}")).json()
    assert [a["id"] for a in shown["answers"]] == [answer["id"]]
    assert shown["answers"][0]["body"] == "Rayleigh scattering."


async def test_author_field_in_the_body_is_rejected(client: httpx.AsyncClient, user: User) -> None:
    response = await client.post(
        "/questions", json=question_payload(author="someone-else"), headers=user.headers
    )
    assert response.status_code == 422


async def test_unknown_question_is_404_and_writes_nothing(
    client: httpx.AsyncClient, user: User, db: Engine
) -> None:
    missing = uuid.uuid4()
    response = await client.post(
        f"/questions/{missing}/answers", json={"body": "hello"}, headers=user.headers
    )
    assert response.status_code == 404
    assert (await client.get(f"/questions/{missing}")).status_code == 404
    assert outbox_rows(db, str(missing)) == []


@pytest.fixture
def failing_outbox(db: Engine) -> object:
    """A trigger that makes the outbox insert of one question's answer fail in PostgreSQL.

    It is an AFTER trigger that raises only when the answer row is already visible to it,
    so it proves the failure happens after the business insert (the answer and its outbox
    row are written by one statement; AFTER row triggers see that statement's effects).
    """
    qid: dict[str, str] = {}
    name = f"fail_{uuid.uuid4().hex[:10]}"

    def arm(question_id: str) -> None:
        qid["id"] = question_id
        with db.begin() as conn:
            conn.execute(
                text(f"""
                CREATE FUNCTION qa.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT 1 FROM qa.answers
                               WHERE question_id = NEW.aggregate_id::uuid) THEN
                        RAISE EXCEPTION 'injected outbox failure';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER {name} AFTER INSERT ON qa.outbox FOR EACH ROW
                WHEN (NEW.event_type = 'answer.created' AND NEW.aggregate_id = '{question_id}')
                EXECUTE FUNCTION qa.{name}();
                """)
            )

    def disarm() -> None:
        with db.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON qa.outbox"))
            conn.execute(text(f"DROP FUNCTION IF EXISTS qa.{name}()"))

    arm.disarm = disarm  # type: ignore[attr-defined]
    yield arm
    if qid:
        disarm()


async def test_failure_after_the_answer_insert_leaves_neither_row(
    client: httpx.AsyncClient,
    user: User,
    db: Engine,
    failing_outbox: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    question = await post_question(client, user)
    failing_outbox(question["id"])  # type: ignore[operator]
    url = f"/questions/{question['id']}/answers"
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}

    response = await client.post(url, json={"body": "lost?"}, headers={**user.headers, **key})

    assert response.status_code == 500
    assert set(response.json()) == {"detail", "request_id"}
    assert response.json()["request_id"] == response.headers["X-Request-ID"]
    logged = [r for r in caplog.records if response.headers["X-Request-ID"] in r.getMessage()]
    assert logged and logged[0].exc_info  # the details are in the log, under the request id
    for leak in ("Traceback", "injected", "INSERT", "qa.outbox", "psycopg"):
        assert leak not in response.text
    qid = question["id"]
    assert count(db, "SELECT count(*) FROM qa.answers WHERE question_id = :q", q=qid) == 0
    assert outbox_rows(db, qid, "answer.created") == []
    assert (
        count(
            db, "SELECT count(*) FROM qa.idempotency_keys WHERE key = :k", k=key["Idempotency-Key"]
        )
        == 0
    )


async def test_retry_after_the_failure_is_fixed_creates_the_answer_once(
    client: httpx.AsyncClient, user: User, db: Engine, failing_outbox: object
) -> None:
    question = await post_question(client, user)
    failing_outbox(question["id"])  # type: ignore[operator]
    url = f"/questions/{question['id']}/answers"
    headers = {**user.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await client.post(url, json={"body": "x"}, headers=headers)).status_code == 500
    failing_outbox.disarm()  # type: ignore[attr-defined]  # the fault clears; client retries
    first = await client.post(url, json={"body": "x"}, headers=headers)
    again = await client.post(url, json={"body": "x"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len(outbox_rows(db, question["id"], "answer.created")) == 1


async def test_benchmark_variant_skips_only_the_outbox_row(
    settings: Settings, user: User, db: Engine
) -> None:
    # The benchmark's own variant (production code has no switch for it).
    with without_outbox():
        async with running(settings) as client:
            question = await post_question(client, user)
            answer = await client.post(
                f"/questions/{question['id']}/answers", json={"body": "x"}, headers=user.headers
            )
    assert answer.status_code == 201
    assert count(db, "SELECT count(*) FROM qa.answers WHERE id = :a", a=answer.json()["id"]) == 1
    assert outbox_rows(db, question["id"]) == []
