"""The unit of work's round trips (psycopg pipeline mode): ``commit`` sends its pending
rows and the ``COMMIT`` in one flight, ``begin_with`` the ``BEGIN`` and the first
statement. A failing row commits nothing, a statement begun that way is rolled back
with its transaction, and the connection goes back to the pool clean (out of pipeline
mode and of autocommit, no transaction left open)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.writes import _NEXT_SEQUENCE, ANSWERS, QUESTIONS
from outbox.db import make_async_engine
from outbox.events import Envelope, QuestionCreatedV1, new_envelope
from outbox.settings import Settings
from outbox.uow import UnitOfWork


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """One pooled connection: every unit of work below reuses the same one."""
    engine = make_async_engine(
        settings.database_url, application_name="test-uow-commit", pool_size=1, max_overflow=0
    )
    yield engine
    await engine.dispose()


def _question(qid: uuid.UUID) -> dict[str, object]:
    return {
        "id": qid,
        "title": "Why is the sky blue?",
        "body": "Rayleigh?",
        "subject": "physics",
        "grade": 7,
        "author": "uow",
        "created_at": datetime.now(UTC),
        "last_sequence": 1,
    }


def _event(qid: uuid.UUID) -> Envelope:
    data = QuestionCreatedV1(
        question_id=qid,
        title="Why is the sky blue?",
        subject="physics",
        grade=7,
        author="uow",
        created_at=datetime.now(UTC),
    )
    return new_envelope("question.created", "question", qid, data, sequence=1)


def _count(db: Engine, sql: str, **params: object) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


async def _driver(conn: Any) -> Any:
    """The psycopg connection under a pooled SQLAlchemy connection."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def test_a_failing_row_commits_neither_it_nor_its_event(
    engine: AsyncEngine, db: Engine
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    missing_question = uuid.uuid4()
    envelope = _event(missing_question)
    answer = {
        "id": uuid.uuid4(),
        "question_id": missing_question,  # foreign key violation
        "body": "42",
        "author": "uow",
        "created_at": datetime.now(UTC),
    }
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        async with UnitOfWork(sessions) as uow:
            await uow.session.execute(text("SELECT 1"))  # the transaction is open
            uow.insert(ANSWERS, answer)
            uow.add_event(envelope)
            await uow.commit()
    assert _count(db, "SELECT count(*) FROM qa.answers WHERE id = :a", a=answer["id"]) == 0
    assert _count(db, "SELECT count(*) FROM qa.outbox WHERE event_id = :e", e=envelope.id) == 0

    # The same (only) connection, clean again: a write in a new unit of work commits,
    # and a transaction of its own sees no leftover state.
    qid = uuid.uuid4()
    good = _event(qid)
    async with UnitOfWork(sessions) as uow:
        uow.insert(QUESTIONS, _question(qid))
        uow.add_event(good)
        await uow.commit()
    assert _count(db, "SELECT count(*) FROM qa.outbox WHERE event_id = :e", e=good.id) == 1
    async with engine.connect() as conn:
        driver = await _driver(conn)
        assert driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert (
            await conn.execute(text("SELECT count(*) FROM qa.questions WHERE id = :q"), {"q": qid})
        ).scalar_one() == 1


async def test_rows_alone_begin_and_commit_their_own_transaction(
    engine: AsyncEngine, db: Engine
) -> None:
    """No statement before the commit (a question's creation): the rows still commit
    together with their event, and nothing is left open on the connection."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    qid = uuid.uuid4()
    envelope = _event(qid)
    async with UnitOfWork(sessions) as uow:
        uow.insert(QUESTIONS, _question(qid))
        uow.add_event(envelope)
        await uow.commit()
    assert _count(db, "SELECT count(*) FROM qa.questions WHERE id = :q", q=qid) == 1
    assert _count(db, "SELECT count(*) FROM qa.outbox WHERE event_id = :e", e=envelope.id) == 1
    async with engine.connect() as conn:
        driver = await _driver(conn)
        assert driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_begin_with_starts_a_transaction_that_rolls_back_on_exit(
    engine: AsyncEngine, db: Engine
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    qid = uuid.uuid4()
    async with UnitOfWork(sessions) as uow:
        uow.insert(QUESTIONS, _question(qid))
        uow.add_event(_event(qid))
        await uow.commit()

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        async with UnitOfWork(sessions) as uow:
            row = await uow.begin_with(_NEXT_SEQUENCE, {"question_id": qid})
            assert row is not None and row.last_sequence == 2 and row.subject == "physics"
            uow.insert(ANSWERS, {"id": uuid.uuid4(), "question_id": uuid.uuid4(), "body": "x",
                                 "author": "uow", "created_at": datetime.now(UTC)})  # fmt: skip
            await uow.commit()
    # The UPDATE ran inside the transaction the failed commit left to roll back.
    sql = "SELECT last_sequence FROM qa.questions WHERE id = :q"
    assert _count(db, sql, q=qid) == 1

    async with UnitOfWork(sessions) as uow:  # an unknown question: no row, nothing locked
        assert await uow.begin_with(_NEXT_SEQUENCE, {"question_id": uuid.uuid4()}) is None

    async with UnitOfWork(sessions) as uow:
        row = await uow.begin_with(_NEXT_SEQUENCE, {"question_id": qid})
        assert row is not None and row.last_sequence == 2
        await uow.commit()
    assert _count(db, sql, q=qid) == 2

    # The one pooled connection is back out of autocommit: a plain session's transaction
    # rolls back what it did.
    async with engine.connect() as conn:
        driver = await _driver(conn)
        assert driver.autocommit is False
        await conn.execute(
            text("UPDATE qa.questions SET last_sequence = 99 WHERE id = :q"), {"q": qid}
        )
        await conn.rollback()
    assert _count(db, sql, q=qid) == 2


async def test_begin_with_later_in_a_transaction_is_an_ordinary_statement(
    engine: AsyncEngine, db: Engine
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    qid = uuid.uuid4()
    async with UnitOfWork(sessions) as uow:
        uow.insert(QUESTIONS, _question(qid))
        await uow.commit()
    async with UnitOfWork(sessions) as uow:
        await uow.session.execute(text("SELECT 1"))
        row = await uow.begin_with(_NEXT_SEQUENCE, {"question_id": qid})
        assert row is not None and row.last_sequence == 2
        # rolled back on exit: no commit
    assert _count(db, "SELECT last_sequence FROM qa.questions WHERE id = :q", q=qid) == 1


async def test_values_arrive_verbatim(engine: AsyncEngine, db: Engine) -> None:
    """Statements run on the driver connection get SQLAlchemy's SQL and bind values:
    quotes, statement separators, backslashes, percent signs (the SQL's placeholders
    are ``%(name)s``) and non-ASCII text are stored as sent."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    qid = uuid.uuid4()
    tricky = "it's'); COMMIT; DROP TABLE qa.answers; -- \\x00 \\' %(r0_id)s %s {} ünï 😀"
    async with UnitOfWork(sessions) as uow:
        uow.insert(QUESTIONS, {**_question(qid), "title": tricky, "body": tricky})
        await uow.commit()
    async with UnitOfWork(sessions) as uow:
        row = await uow.begin_with(_NEXT_SEQUENCE, {"question_id": qid})
        assert row is not None and row.title == tricky
        uow.insert(ANSWERS, {"id": uuid.uuid4(), "question_id": qid, "body": tricky,
                             "author": "uow", "created_at": datetime.now(UTC)})  # fmt: skip
        await uow.commit()
    with db.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT q.body, a.body FROM qa.questions q"
                " JOIN qa.answers a ON a.question_id = q.id WHERE q.id = :q"
            ),
            {"q": qid},
        ).one()
    assert tuple(stored) == (tricky, tricky)
