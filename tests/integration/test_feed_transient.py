"""Transient and unknown failures: retried through the broker tiers, dead-lettered only
when the budget is used up; one failing event does not hold back its batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import Engine, make_url, text

from outbox.settings import Settings
from tests.integration.test_feed_support import (
    Deliveries,
    answer_event,
    broker,
    dead_letters,
    feed_row,
    inbox_ids,
    poll,
    publish_events,
    question_event,
    running_consumer,
)
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def db_proxy(settings: Settings) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of PostgreSQL and the feed URL that goes through it."""
    url = make_url(settings.database_url.get_secret_value())
    with TcpProxy(url.port or 5432, url.host or "127.0.0.1") as proxy:
        via = url.set(host="127.0.0.1", port=proxy.port)
        yield proxy, via.render_as_string(hide_password=False)


async def _drained(settings: Settings, db: Engine) -> None:
    """Wait until the consumer has worked through whatever earlier tests left queued."""
    sentinel = question_event()
    async with broker(settings) as channel:
        await publish_events(channel, [sentinel])
    await poll("backlog drained", lambda: inbox_ids(db, [sentinel.id]), timeout=60)


def _delivered_at_least(deliveries: Deliveries, ids: list[str], times: int) -> bool:
    return all(deliveries.counts[i] >= times for i in ids)


async def test_outage_within_the_retry_budget_dead_letters_nothing_and_applies_once(
    settings: Settings, db: Engine, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, via = db_proxy
    qid = uuid.uuid4()
    events = [question_event(qid), answer_event(qid, 1), answer_event(qid, 2)]
    ids = [str(e.id) for e in events]
    overrides = {"feed_database_url": via, "retry_delays": [0.5, 1.0, 2.0, 4.0]}
    async with (
        broker(settings) as channel,
        dead_letters(settings) as dead,
        running_consumer(settings, **overrides) as deliveries,
    ):
        await _drained(settings, db)
        proxy.block()
        try:
            await publish_events(channel, events)
            # Well past the quick in-process retries: each event came back from two tiers.
            await poll(
                "two trips through the tiers", lambda: _delivered_at_least(deliveries, ids, 3)
            )
        finally:
            proxy.unblock()
        await poll(
            "all applied", lambda: inbox_ids(db, [e.id for e in events]) == {e.id for e in events}
        )
        assert not any(i in dead.by_id for i in ids)
    row = feed_row(db, qid)
    assert row is not None and row["answer_count"] == 2 and row["title"]


async def test_outage_past_the_retry_budget_ends_as_exhausted(
    settings: Settings, db: Engine, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, via = db_proxy
    qid = uuid.uuid4()
    event = answer_event(qid)
    overrides = {"feed_database_url": via, "retry_delays": [0.2, 0.4]}
    async with broker(settings) as channel, dead_letters(settings) as dead:
        async with running_consumer(settings, **overrides) as deliveries:
            await _drained(settings, db)
            proxy.block()
            try:
                await publish_events(channel, [event])
                letter = await poll("exhausted dead letter", lambda: dead.get(str(event.id)))
            finally:
                proxy.unblock()
            assert deliveries.counts[str(event.id)] == 3  # first delivery + two tiers
        h = letter.headers
        assert h["x-disposition"] == "exhausted"
        assert h["x-attempts"] == 3
        assert h["x-error-class"] == "OperationalError"
        assert h["x-original-routing-key"] == "answer.created"
        assert letter.body == event.to_bytes()
        assert inbox_ids(db, [event.id]) == set()

        # Once the cause is fixed, re-delivering the dead letter (twice) applies it once.
        async with running_consumer(settings, **overrides):
            for _ in range(2):
                await channel.default_exchange.publish(
                    _replay(letter), routing_key="feed.events", mandatory=True
                )
            await poll("replayed answer applied", lambda: inbox_ids(db, [event.id]))
            await _drained(settings, db)
    row = feed_row(db, qid)
    assert row is not None and row["answer_count"] == 1


def _replay(letter: AbstractIncomingMessage) -> aio_pika.Message:
    return aio_pika.Message(letter.body, message_id=letter.message_id, type=letter.type)


@pytest.fixture
def failing_question(db: Engine) -> Iterator[uuid.UUID]:
    """A question id whose feed row the database refuses to write (a trigger raises)."""
    qid = uuid.uuid4()
    fn = f"test_fail_{qid.hex}"
    with db.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION feed.{fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.question_id = '{qid}' THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {fn} BEFORE INSERT OR UPDATE ON feed.questions "
                f"FOR EACH ROW EXECUTE FUNCTION feed.{fn}()"
            )
        )
    try:
        yield qid
    finally:
        with db.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {fn} ON feed.questions"))
            conn.execute(text(f"DROP FUNCTION IF EXISTS feed.{fn}()"))


async def test_one_failing_event_does_not_fail_its_batch_and_ends_as_unknown(
    settings: Settings, db: Engine, failing_question: uuid.UUID
) -> None:
    good = [question_event(), question_event()]
    bad = question_event(failing_question)
    overrides = {
        "retry_delays": [0.2, 0.4],
        "unknown_error_retries": 2,
        "consumer_batch_wait_ms": 300,  # the three arrive in one batch
    }
    async with broker(settings) as channel, dead_letters(settings) as dead:
        # Queued before the consumer starts, so they are delivered together.
        await publish_events(channel, [good[0], bad, good[1]])
        async with running_consumer(settings, **overrides) as deliveries:
            ids = {e.id for e in good}
            await poll("good events applied", lambda: inbox_ids(db, ids) == ids)
            letter = await poll("unknown dead letter", lambda: dead.get(str(bad.id)))
            assert deliveries.counts[str(bad.id)] == 3  # first delivery + 2 unknown retries
            assert all(deliveries.counts[str(e.id)] == 1 for e in good)
    assert letter.headers["x-disposition"] == "unknown"
    assert letter.headers["x-error-class"] == "RaiseException"
    assert "injected failure" in str(letter.headers["x-error-message"])
    assert inbox_ids(db, [bad.id]) == set()
    assert feed_row(db, failing_question) is None


async def test_broker_connection_cuts_lose_nothing_and_apply_nothing_twice(
    settings: Settings, db: Engine
) -> None:
    """The consumer's AMQP connection is cut twice mid-stream: the robust connection comes
    back, unacked messages are redelivered, and the inbox absorbs the repeats."""
    amqp = make_url(settings.amqp_url.get_secret_value().replace("amqp://", "postgresql://"))
    with TcpProxy(amqp.port or 5672, amqp.host or "127.0.0.1") as proxy:
        via = settings.amqp_url.get_secret_value().replace(
            f":{amqp.port or 5672}/", f":{proxy.port}/"
        )
        assert str(proxy.port) in via
        qids = [uuid.uuid4() for _ in range(100)]
        events = [e for q in qids for e in (question_event(q), answer_event(q), answer_event(q))]
        ids = {e.id for e in events}
        async with broker(settings) as channel, running_consumer(settings, amqp_url=via):
            for cut_after in (100, 200):
                start = cut_after - 100
                await publish_events(channel, events[start:cut_after])
                await poll("some applied", lambda n=start: len(inbox_ids(db, ids)) > n)
                connections = proxy.connections_accepted
                proxy.cut()
                await poll("reconnected", lambda c=connections: proxy.connections_accepted > c)
            await publish_events(channel, events[200:])
            await poll("all applied", lambda: inbox_ids(db, ids) == ids)
    for qid in qids:
        row = feed_row(db, qid)
        assert row is not None and row["answer_count"] == 2 and row["title"]
