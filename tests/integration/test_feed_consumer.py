"""The feed consumer applies events once, in any order, and acks only after commit."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from outbox.events import Envelope
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    answer_event,
    broker,
    envelope_message,
    feed_row,
    inbox_ids,
    poll,
    publish,
    publish_events,
    question_event,
    running_consumer,
)


async def test_question_and_answer_are_applied_with_their_inbox_rows(
    settings: Settings, db: Engine
) -> None:
    question = question_event()
    qid = question.data["question_id"]
    answer = answer_event(uuid.UUID(qid), minute=7)
    async with broker(settings) as channel, running_consumer(settings) as deliveries:
        await publish_events(channel, [question, answer])
        await poll("answer applied", lambda: (feed_row(db, uuid.UUID(qid)) or {}).get("answered"))
    row = feed_row(db, uuid.UUID(qid))
    assert row is not None
    assert row["title"] == "What is a prime number?"
    assert (row["subject"], row["grade"], row["answer_count"]) == ("math", 5, 1)
    assert row["last_answer_at"].isoformat() == answer.data["created_at"].replace("Z", "+00:00")
    assert inbox_ids(db, [question.id, answer.id]) == {question.id, answer.id}
    assert deliveries.counts[str(question.id)] == 1


async def test_duplicate_deliveries_change_nothing(settings: Settings, db: Engine) -> None:
    qid = uuid.uuid4()
    question, answer = question_event(qid), answer_event(qid)

    def duplicates() -> float:
        labels = {"subscriber": "feed"}
        return REGISTRY.get_sample_value("qa_subscriber_duplicates_skipped_total", labels) or 0.0

    before = duplicates()
    async with broker(settings) as channel, running_consumer(settings):
        # The same event three times in a row (one batch) and again later (a later batch).
        await publish_events(channel, [question, answer, answer, answer])
        await poll("answer applied", lambda: (feed_row(db, qid) or {}).get("answered"))
        await publish_events(channel, [question, answer])
        sentinel = question_event()
        await publish_events(channel, [sentinel])
        await poll("sentinel applied", lambda: inbox_ids(db, [sentinel.id]))
        # Counted once the batch's connection is back in the pool (the test may look
        # right after the commit, before that).
        await poll("duplicates counted", lambda: duplicates() - before >= 4)
    row = feed_row(db, qid)
    assert row is not None and row["answer_count"] == 1
    assert duplicates() - before == 4


def _final_row(db: Engine, qid: uuid.UUID) -> dict[str, Any]:
    row = feed_row(db, qid)
    assert row is not None
    return row


async def test_final_state_is_the_same_for_every_order_and_duplicate(
    settings: Settings, db: Engine
) -> None:
    """All 6 orders of [question, answer, answer], each in one batch and one by one,
    with duplicates mixed in, end in the same row."""
    scenarios: list[tuple[uuid.UUID, list[Envelope], bool]] = []
    for order in itertools.permutations(range(3)):
        for one_by_one in (False, True):
            qid = uuid.uuid4()
            events = [question_event(qid), answer_event(qid, 3), answer_event(qid, 9)]
            sequence = [events[i] for i in order]
            sequence.insert(1, sequence[0])  # a duplicate right after the first
            sequence.append(sequence[2])  # and one at the end
            scenarios.append((qid, sequence, one_by_one))
    async with broker(settings) as channel, running_consumer(settings):
        for _qid, sequence, one_by_one in scenarios:
            if not one_by_one:
                await publish_events(channel, sequence)
                continue
            for envelope in sequence:
                await publish(channel, envelope_message(envelope), envelope.type)
                await poll("event applied", lambda e=envelope: inbox_ids(db, [e.id]))
        for _qid, sequence, _ in scenarios:
            ids = {e.id for e in sequence}
            await poll("all applied", lambda ids=ids: inbox_ids(db, ids) == ids)
    rows = [_final_row(db, qid) for qid, _, _ in scenarios]
    assert rows[0]["answer_count"] == 2
    assert rows[0]["answered"] is True
    assert rows[0]["last_answer_at"].minute == 9
    assert rows[0]["title"] == "What is a prime number?"
    assert all(row == rows[0] for row in rows), rows


async def test_answer_before_question_keeps_the_row_hidden_until_the_question_arrives(
    settings: Settings, db: Engine
) -> None:
    qid = uuid.uuid4()
    async with broker(settings) as channel, running_consumer(settings):
        await publish_events(channel, [answer_event(qid)])
        await poll("row from the answer", lambda: feed_row(db, qid))
        row = feed_row(db, qid)
        assert row is not None
        assert (row["title"], row["answer_count"]) == (None, 1)
        await publish_events(channel, [question_event(qid, title="Late question")])
        await poll("title set", lambda: (feed_row(db, qid) or {}).get("title"))
    row = feed_row(db, qid)
    assert row is not None
    assert (row["title"], row["answer_count"], row["answered"]) == ("Late question", 1, True)


async def test_message_is_not_acked_before_its_transaction_commits(
    settings: Settings, db: Engine
) -> None:
    """The consumer is stopped while its transaction waits on a row lock: the message was
    not acked, comes back to the next consumer and is applied exactly once."""
    qid = uuid.uuid4()
    question, answer = question_event(qid), answer_event(qid)
    async with broker(settings) as channel:
        async with running_consumer(settings):
            await publish_events(channel, [question])
            await poll("question applied", lambda: feed_row(db, qid))
        with db.connect() as locker:
            locker.execute(
                text("SELECT 1 FROM feed.questions WHERE question_id = :q FOR UPDATE"), {"q": qid}
            )
            async with running_consumer(settings) as deliveries:
                await publish_events(channel, [answer])
                await poll("answer delivered", lambda: deliveries.counts[str(answer.id)])
                await poll("consumer blocked on the lock", lambda: _waiting_on_lock(db))
            # Stopped mid-transaction: nothing may have been committed for the answer.
            assert inbox_ids(db, [answer.id]) == set()
            locker.rollback()
        async with running_consumer(settings) as deliveries:
            await poll("answer applied", lambda: inbox_ids(db, [answer.id]))
            assert deliveries.counts[str(answer.id)] == 1
    row = feed_row(db, qid)
    assert row is not None and row["answer_count"] == 1


def _waiting_on_lock(db: Engine) -> bool:
    with db.connect() as conn:
        count = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'qa-consumer-feed' AND wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
    return bool(count)


async def test_two_consumers_on_one_queue_apply_each_event_once(
    settings: Settings, db: Engine
) -> None:
    """Duplicates spread over two consumers (each may hold one copy) still count once."""
    qids = [uuid.uuid4() for _ in range(40)]
    events: list[Envelope] = []
    for qid in qids:
        answers = [answer_event(qid, m) for m in range(3)]
        events += [answers[0], question_event(qid), *answers[1:]]
    doubled = [e for e in events for _ in range(2)]  # every event delivered twice
    ids = {e.id for e in events}
    async with (
        broker(settings) as channel,
        running_consumer(settings, consumer_batch_size=8, consumer_prefetch=16) as first,
        running_consumer(settings, consumer_batch_size=8, consumer_prefetch=16) as second,
    ):
        await publish_events(channel, doubled)
        await poll("all applied", lambda: inbox_ids(db, ids) == ids)
        sentinel = question_event()
        await publish_events(channel, [sentinel])
        await poll("sentinel applied", lambda: inbox_ids(db, [sentinel.id]))
        assert sum(first.counts.values()) and sum(second.counts.values())  # both took part
    for qid in qids:
        row = feed_row(db, qid)
        assert row is not None and row["answer_count"] == 3 and row["title"]
