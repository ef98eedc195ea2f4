"""Feed projection: last writer by sequence, never by arrival (real PostgreSQL).

A question's events - ``question.created``, several ``question.edited`` and answers
(``answer.created`` v2 with the question's state, and v1 without) - are applied through
the consumer's real decode and apply path in every order Hypothesis finds, with
duplicates and any split into transactions. The row must always end as the event with
the highest sequence says, with each answer counted once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.feed import ACCEPTS
from consumers.feed import apply as feed_apply
from consumers.runtime import inbox
from outbox.db import make_async_engine
from outbox.events import (
    AnswerCreatedV1,
    AnswerCreatedV2,
    QuestionCreatedV1,
    QuestionEditedV1,
    QuestionState,
    new_envelope,
)
from outbox.versions import decode_for

CONSUMER = "feed-sequence-test"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
States = st.tuples(
    st.sampled_from(["Old title", "New title", "Newest title", "Über-title ✓"]),
    st.sampled_from(["math", "physics", "world-history"]),
    st.integers(min_value=1, max_value=12),
)


def _history(qid: uuid.UUID, steps: list[tuple[str, tuple[str, str, int]]]) -> list[bytes]:
    """Message bodies of one question: created (sequence 1), then one event per step."""
    title, subject, grade = "First title", "chemistry", 4
    created = QuestionCreatedV1(
        question_id=qid, title=title, subject=subject, grade=grade, author="a", created_at=T0
    )
    bodies = [new_envelope("question.created", "question", qid, created, sequence=1).to_bytes()]
    for seq, (kind, state) in enumerate(steps, start=2):
        at = T0 + timedelta(minutes=seq)
        data: BaseModel
        version = 1
        if kind == "edit":
            title, subject, grade = state
            data = QuestionEditedV1(
                question_id=qid,
                changed=["title", "subject", "grade"],
                title=title,
                subject=subject,
                grade=grade,
                edited_at=at,
            )
            event_type = "question.edited"
        elif kind == "answer_v2":
            current = QuestionState(id=qid, title=title, subject=subject, grade=grade)
            data = AnswerCreatedV2(
                answer_id=uuid.uuid4(), question=current, author="b", created_at=at
            )
            event_type, version = "answer.created", 2
        else:
            data = AnswerCreatedV1(
                answer_id=uuid.uuid4(), question_id=qid, author="b", created_at=at
            )
            event_type = "answer.created"
        envelope = new_envelope(event_type, "question", qid, data, version, sequence=seq)
        bodies.append(envelope.to_bytes())
    return bodies


@pytest.fixture(scope="module")
def loop_and_engine(services: dict[str, str]) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    loop = asyncio.new_event_loop()
    engine = make_async_engine(services["QA_DATABASE_URL"], application_name="qa-test")
    yield loop, engine
    loop.run_until_complete(engine.dispose())
    loop.close()


async def _apply(engine: AsyncEngine, batches: list[list[bytes]]) -> None:
    for batch in batches:
        events = [decode_for(body, ACCEPTS) for body in batch]
        async with engine.begin() as conn:
            # The runtime's path: inbox rows decide which events are new, then the feed.
            fresh = await inbox.claim(conn, CONSUMER, events)
            first = {e.envelope.id: e for e in reversed(events) if e.envelope.id in fresh}
            await feed_apply(conn, list(first.values()))


async def _row(engine: AsyncEngine, qid: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT title, subject, grade, state_sequence, created_at, answer_count, "
                "last_answer_at FROM feed.questions WHERE question_id = :q"
            ),
            {"q": qid},
        )
        return result.one()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["edit", "edit", "answer_v2", "answer_v1"]), States),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_any_order_duplicates_and_batching_end_in_the_highest_sequence_state(
    loop_and_engine: tuple[asyncio.AbstractEventLoop, Any],
    steps: list[tuple[str, tuple[str, str, int]]],
    data: st.DataObject,
) -> None:
    loop, engine = loop_and_engine
    qid = uuid.uuid4()
    bodies = _history(qid, steps)
    duplicates = data.draw(st.lists(st.sampled_from(bodies), max_size=4))
    deliveries = data.draw(st.permutations(bodies + duplicates))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(deliveries) - 1), max_size=4)))
    batches = [deliveries[a:b] for a, b in zip([0, *cuts], [*cuts, len(deliveries)], strict=True)]

    loop.run_until_complete(_apply(engine, batches))

    # Truth: replay in sequence order, keeping the latest state.
    title, subject, grade = "First title", "chemistry", 4
    answers = 0
    for kind, state in steps:
        if kind == "edit":
            title, subject, grade = state
        else:
            answers += 1
    row = loop.run_until_complete(_row(engine, qid))
    last_answer = max(
        (T0 + timedelta(minutes=seq) for seq, (k, _) in enumerate(steps, 2) if k != "edit"),
        default=None,
    )
    assert (row.title, row.subject, row.grade) == (title, subject, grade)
    carrying_state = [seq for seq, (k, _) in enumerate(steps, 2) if k != "answer_v1"]
    assert row.state_sequence == max([1, *carrying_state])
    assert row.created_at == T0
    assert row.answer_count == answers
    assert row.last_answer_at == last_answer


def test_a_stale_edit_arriving_last_changes_nothing(
    loop_and_engine: tuple[asyncio.AbstractEventLoop, Any],
) -> None:
    loop, engine = loop_and_engine
    qid = uuid.uuid4()
    created, first, second = _history(
        qid, [("edit", ("Old title", "math", 2)), ("edit", ("New title", "physics", 3))]
    )
    loop.run_until_complete(_apply(engine, [[second], [created], [first]]))
    row = loop.run_until_complete(_row(engine, qid))
    assert (row.title, row.subject, row.grade, row.state_sequence) == ("New title", "physics", 3, 3)
