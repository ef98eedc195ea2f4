"""The unit of work's one-statement INSERT is built once per row shape and reused with
each call's own parameters (no values of an earlier call leak into a later one)."""

from __future__ import annotations

import uuid

from sqlalchemy.dialects import postgresql

from api.writes import ANSWERS, QUESTIONS
from outbox.uow import OUTBOX, _one_statement


def _answer(body: str) -> dict[str, object]:
    return {"id": uuid.uuid4(), "question_id": uuid.uuid4(), "body": body, "author": "a"}


def _outbox(event_id: uuid.UUID) -> dict[str, object]:
    return {"event_id": event_id, "routing_key": "answer.created", "headers": {}}


def test_same_shape_reuses_the_statement_with_each_calls_values() -> None:
    first_event, second_event = uuid.uuid4(), uuid.uuid4()
    one, one_params = _one_statement([(ANSWERS, _answer("one")), (OUTBOX, _outbox(first_event))])
    two, two_params = _one_statement([(ANSWERS, _answer("two")), (OUTBOX, _outbox(second_event))])
    assert one is two
    assert one_params["r0_body"] == "one" and one_params["r1_event_id"] == first_event
    assert two_params["r0_body"] == "two" and two_params["r1_event_id"] == second_event
    sql = str(one.compile(dialect=postgresql.dialect()))
    assert sql.startswith("WITH w0 AS")
    assert "INSERT INTO qa.answers" in sql and "INSERT INTO qa.outbox" in sql
    assert "RETURNING" not in sql  # least privilege: the API role may only INSERT the outbox
    compiled = one.compile(dialect=postgresql.dialect())
    assert set(compiled.params) == set(one_params)


def test_another_shape_gets_its_own_statement() -> None:
    question = {"id": uuid.uuid4(), "title": "t", "last_sequence": 1}
    answer, _ = _one_statement([(ANSWERS, _answer("x")), (OUTBOX, _outbox(uuid.uuid4()))])
    asked, params = _one_statement([(QUESTIONS, question), (OUTBOX, _outbox(uuid.uuid4()))])
    alone, _ = _one_statement([(OUTBOX, _outbox(uuid.uuid4()))])
    assert len({id(answer), id(asked), id(alone)}) == 3
    assert "INSERT INTO qa.questions" in str(asked.compile(dialect=postgresql.dialect()))
    assert params["r0_title"] == "t"
    assert "WITH" not in str(alone.compile(dialect=postgresql.dialect()))
