"""Property-based chaos on the feed's apply path (Hypothesis ``RuleBasedStateMachine``).

The machine posts questions and answers (the truth), and plays a hostile broker against
the consumer's real apply path - ``outbox.events.decode`` -> the runtime's inbox claim
(``consumers.runtime.inbox.claim``) -> ``consumers.feed.apply`` in real PostgreSQL
transactions:

* deliveries in any order and any batch split (reorders),
* duplicates (a relay re-publish after a crash, a broker redelivery, an operator replay
  of an event that was in fact applied),
* poison messages (undecodable, schema-invalid, unknown type) that must never touch the
  feed or the inbox,
* crashes mid-batch (the transaction is rolled back, nothing is acked: every message of
  the batch is delivered again later) and process restarts (a new engine, fresh pool).

After every step the feed rows and inbox of this machine's questions must equal what the
acked events imply; at the end, once every pending message is delivered, they must equal
the truth: all questions present, ``answer_count``, ``answered`` and ``last_answer_at``.

The broker is modelled (a list of pending message bodies): the real broker, relay and
consumer processes are exercised by ``test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.feed import apply as feed_apply
from consumers.runtime import inbox
from outbox.db import make_async_engine
from outbox.errors import PermanentMessageError
from outbox.events import AnswerCreatedV1, QuestionCreatedV1, decode, new_envelope

CONSUMER = "feed-stateful"
POISON = [
    b"\xff\xfe not utf-8",
    b'{"truncated": ',
    b"[1, 2, 3]",
    b'{"id": "not-a-uuid", "type": "question.created"}',
    new_envelope(
        "answer.created",
        "question",
        "x",
        AnswerCreatedV1(
            answer_id=uuid.uuid4(),
            question_id=uuid.uuid4(),
            author="p",
            created_at=datetime.now(UTC),
        ),
    )
    .model_copy(update={"type": "question.created"})
    .to_bytes(),  # question.created carrying an answer's data: schema-invalid
    new_envelope(
        "question.created",
        "question",
        "x",
        QuestionCreatedV1(
            question_id=uuid.uuid4(),
            title="t",
            subject="s",
            grade=1,
            author="p",
            created_at=datetime.now(UTC),
        ),
    )
    .model_copy(update={"version": 99})
    .to_bytes(),  # unknown version
]


@dataclass
class Truth:
    answers: list[datetime] = field(default_factory=list)


class FeedMachine(RuleBasedStateMachine):
    db_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = self._engine()
        self.truth: dict[uuid.UUID, Truth] = {}
        self.bodies: dict[uuid.UUID, bytes] = {}  # every event ever "committed"
        self.pending: list[bytes] = []  # delivered-but-unacked or not yet delivered
        self.acked: set[uuid.UUID] = set()  # events whose transaction committed
        self.poison_seen = 0
        self.clock = datetime(2024, 1, 1, tzinfo=UTC)

    def _engine(self) -> AsyncEngine:
        return make_async_engine(self.db_url, application_name="feed-stateful")

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=1, microseconds=1000)
        return self.clock

    # -- the write side ------------------------------------------------------------------

    @initialize()
    def first_question(self) -> None:
        self.post_question()

    @rule()
    def post_question(self) -> None:
        qid = uuid.uuid4()
        data = QuestionCreatedV1(
            question_id=qid,
            title=f"q {qid.hex[:8]}",
            subject="math",
            grade=3,
            author="hypo",
            created_at=self._tick(),
        )
        self._commit(new_envelope("question.created", "question", qid, data).to_bytes())
        self.truth[qid] = Truth()

    @rule(pick=st.integers(min_value=0))
    def post_answer(self, pick: int) -> None:
        qid = list(self.truth)[pick % len(self.truth)]
        at = self._tick()
        data = AnswerCreatedV1(answer_id=uuid.uuid4(), question_id=qid, author="h", created_at=at)
        self._commit(new_envelope("answer.created", "question", qid, data).to_bytes())
        self.truth[qid].answers.append(at)

    def _commit(self, body: bytes) -> None:
        """The outbox row committed: its message will reach the broker (at least once)."""
        event_id = decode(body).envelope.id
        self.bodies[event_id] = body
        self.pending.append(body)

    # -- the hostile broker ---------------------------------------------------------------

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), crash=st.booleans())
    def deliver(self, data: st.DataObject, crash: bool) -> None:
        """A batch: any subset of pending messages, any order; maybe a crash before commit."""
        order = data.draw(st.permutations(range(len(self.pending))))
        size = data.draw(st.integers(min_value=1, max_value=len(order)))
        batch = [self.pending[i] for i in order[:size]]
        changes, poison = [], []
        for body in batch:
            try:
                changes.append(decode(body))
            except PermanentMessageError:
                poison.append(body)
        applied = self._run(self._apply(changes, commit=not crash))
        if crash:
            return  # nothing acked: every message of the batch stays pending
        # Ack after commit: delivered messages leave the queue; poison goes to the DLQ.
        for body in batch:
            self.pending.remove(body)
        self.poison_seen += len(poison)
        new_ids = {c.envelope.id for c in changes} - self.acked
        assert applied == new_ids, "apply must report exactly the events new to the inbox"
        self.acked |= new_ids

    async def _apply(self, changes: list[Any], commit: bool) -> set[uuid.UUID]:
        async with self.engine.connect() as conn:
            trans = await conn.begin()
            applied = await inbox.claim(conn, CONSUMER, changes)
            # Once per new event, however often it is in the batch (as the runtime does).
            first = {c.envelope.id: c for c in reversed(changes) if c.envelope.id in applied}
            await feed_apply(conn, list(first.values()))
            if commit:
                await trans.commit()
            else:
                await trans.rollback()
            return applied

    @precondition(lambda self: bool(self.acked))
    @rule(pick=st.integers(min_value=0))
    def duplicate(self, pick: int) -> None:
        """An applied event comes again (relay re-publish, redelivery, operator replay)."""
        ids = sorted(self.acked)
        self.pending.append(self.bodies[ids[pick % len(ids)]])

    @rule(body=st.sampled_from(POISON))
    def poison(self, body: bytes) -> None:
        self.pending.append(body)

    @rule()
    def restart(self) -> None:
        """The consumer process restarts: its connections are gone, a new pool is built."""
        self._run(self.engine.dispose())
        self.engine = self._engine()

    # -- invariants ----------------------------------------------------------------------

    def _expected(self, drained: bool) -> dict[uuid.UUID, tuple[bool, int, datetime | None]]:
        """question id -> (question applied, answers applied, last answer time)."""
        out: dict[uuid.UUID, tuple[bool, int, datetime | None]] = {}
        for qid in self.truth:
            out[qid] = (False, 0, None)
        for event_id in self.bodies if drained else self.acked:
            event = decode(self.bodies[event_id])
            data = event.data
            if isinstance(data, QuestionCreatedV1):
                has_q, n, last = out[data.question_id]
                out[data.question_id] = (True, n, last)
            elif isinstance(data, AnswerCreatedV1):
                has_q, n, last = out[data.question_id]
                newest = data.created_at if last is None else max(last, data.created_at)
                out[data.question_id] = (has_q, n + 1, newest)
        return out

    def _feed(self) -> tuple[dict[uuid.UUID, tuple[Any, ...]], set[uuid.UUID]]:
        async def read() -> tuple[dict[uuid.UUID, tuple[Any, ...]], set[uuid.UUID]]:
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT question_id, title, answer_count, last_answer_at, answered "
                        "FROM feed.questions WHERE question_id = ANY(:ids)"
                    ),
                    {"ids": list(self.truth)},
                )
                inbox = await conn.execute(
                    text(
                        "SELECT event_id FROM subscribers.inbox "
                        "WHERE subscriber = :c AND event_id = ANY(:ids)"
                    ),
                    {"c": CONSUMER, "ids": list(self.bodies)},
                )
                return {r[0]: tuple(r[1:]) for r in rows}, {r[0] for r in inbox}

        return self._run(read())  # type: ignore[no-any-return]

    def _assert_feed(self, drained: bool) -> None:
        rows, inbox = self._feed()
        assert inbox == (set(self.bodies) if drained else self.acked), "inbox != applied events"
        for qid, (has_q, answers, last) in self._expected(drained).items():
            row = rows.get(qid)
            if not has_q and answers == 0:
                assert row is None or row[0] is None
                continue
            assert row is not None, f"feed lost question {qid}"
            title, count, last_at, answered = row
            assert (title is not None) == has_q
            assert count == answers, f"{qid}: feed counts {count} answers, applied {answers}"
            assert answered == (answers > 0)
            assert last_at == last

    @invariant()
    def feed_matches_applied_events(self) -> None:
        self._assert_feed(drained=False)

    def teardown(self) -> None:
        try:
            # Quiesce: deliver everything still pending, in order, without crashes.
            changes = []
            for body in self.pending:
                try:
                    changes.append(decode(body))
                except PermanentMessageError:
                    self.poison_seen += 1
            self._run(self._apply(changes, commit=True))
            self.pending.clear()
            self._assert_feed(drained=True)
            # The end state equals the truth: every answer counted once.
            rows, _ = self._feed()
            for qid, truth in self.truth.items():
                _title, count, last_at, _answered = rows[qid]
                assert count == len(truth.answers)
                assert last_at == (max(truth.answers) if truth.answers else None)
        finally:
            self._run(self.engine.dispose())
            self.loop.close()


@pytest.mark.usefixtures("services")
def test_feed_apply_path_survives_reorders_duplicates_poison_and_crashes(
    services: dict[str, str],
) -> None:
    FeedMachine.db_url = services["QA_DATABASE_URL"]
    run_state_machine_as_test(
        FeedMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
