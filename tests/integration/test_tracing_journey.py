"""One trace end to end, with the SDK's in-memory exporter: an answer posted to the API while
no relay runs is published by a relay started later and applied by the feed and the
notifier in the request's trace; a transient failure's retried delivery stays in it."""

from __future__ import annotations

import uuid
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, text

from consumers.feed import SUBSCRIBER as FEED
from consumers.notifier import SUBSCRIBER as NOTIFIER
from consumers.notifier.mail import message_id
from outbox.errors import TransientError
from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.subscribers import SideEffect
from tests.integration.notifier_support import smtp, user_event
from tests.integration.test_api_helpers import make_user, post_question, running
from tests.integration.test_feed_support import (
    broker,
    envelope_message,
    poll,
    publish_events,
    question_event,
    running_consumer,
)
from tests.integration.test_relay_support import running_relay, unique_lock_key
from tests.integration.test_runtime_support import toy_subscriber
from tests.support.otel import hex_trace, named, spans_fixture  # noqa: F401
from tests.support.smtp_server import TestSmtpServer

__all__ = ["smtp"]  # the module-scoped SMTP server fixture

TRACE_ID = uuid.uuid4().hex
CLIENT_SPAN = uuid.uuid4().hex[:16]


def _with_id(spans: list[ReadableSpan], event_id: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("messaging.message.id") == event_id]


def _span_id(span: ReadableSpan | None) -> str:
    assert span is not None and span.context is not None
    return format(span.context.span_id, "016x")


def _parent_id(span: ReadableSpan) -> str | None:
    return format(span.parent.span_id, "016x") if span.parent is not None else None


def _applied(spans: list[ReadableSpan]) -> bool:
    return any((s.attributes or {}).get("qa.outcome") == "applied" for s in spans)


def _published_at(db: Engine, event_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT published_at FROM qa.outbox WHERE event_id = :e"), {"e": event_id}
        ).scalar_one()


async def test_one_trace_from_the_answer_post_through_a_restarted_relay_to_feed_and_notifier(
    settings: Settings, db: Engine, spans: InMemorySpanExporter, smtp: TestSmtpServer
) -> None:
    author, answerer = make_user(db), make_user(db)
    lock_key = unique_lock_key()
    async with (
        broker(settings) as channel,
        running_consumer(settings),
        running_consumer(
            settings,
            NOTIFIER,
            smtp_url=smtp.url,
            retry_delays="0.2,0.4,0.8",
            notifier_metrics_port=0,
        ),
        running(settings) as api,
    ):
        await publish_events(channel, [user_event(author.name)])  # the author's address
        async with running_relay(settings, relay_lock_key=lock_key):
            question = await post_question(api, author)
            await poll(
                "the question applied",
                lambda: named(spans, f"process {FEED.queue}") and named(spans, "send qa.events"),
            )
        # The relay is down while the answer is written.
        response = await api.post(
            f"/questions/{question['id']}/answers",
            json={"body": "Rayleigh scattering."},
            headers={**answerer.headers, "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"},
        )
        assert response.status_code == 201, response.text
        (create,) = [
            s
            for s in named(spans, "create qa.events")
            if (s.attributes or {}).get("messaging.rabbitmq.destination.routing_key")
            == "answer.created"
        ]
        event_id = str((create.attributes or {})["messaging.message.id"])
        assert _published_at(db, event_id) is None
        async with running_relay(settings, relay_lock_key=lock_key):  # the relay restarts
            await poll(
                "the feed's and the notifier's apply of the answer",
                lambda: (
                    _with_id(named(spans, f"process {FEED.queue}"), event_id)
                    and _applied(_with_id(named(spans, f"process {NOTIFIER.queue}"), event_id))
                ),
                timeout=60,
            )
    (server,) = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and hex_trace(s) == TRACE_ID
    ]
    assert _parent_id(server) == CLIENT_SPAN  # the client's traceparent is continued
    assert hex_trace(create) == TRACE_ID
    # The publish after the restart continues the stored creation context ...
    (send,) = _with_id(named(spans, "send qa.events"), event_id)
    assert hex_trace(send) == TRACE_ID and _parent_id(send) == _span_id(create)
    (batch,) = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT
        and any(link.context.span_id == create.context.span_id for link in s.links)
    ]
    assert hex_trace(batch) != TRACE_ID  # the batch span links, it does not join
    # ... and so does each subscriber's processing of it.
    (feed,) = _with_id(named(spans, f"process {FEED.queue}"), event_id)
    assert hex_trace(feed) == TRACE_ID and _parent_id(feed) == _span_id(create)
    assert (feed.attributes or {})["qa.outcome"] == "applied"
    notified = _with_id(named(spans, f"process {NOTIFIER.queue}"), event_id)
    assert notified and all(
        hex_trace(s) == TRACE_ID and _parent_id(s) == _span_id(create) for s in notified
    )
    assert smtp.count(message_id(uuid.UUID(event_id))) == 1  # the notifier's apply: the mail


async def test_a_retried_delivery_is_processed_in_the_same_trace(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    failed_once: set[uuid.UUID] = set()

    async def flaky(_resources: Any, event: DecodedEvent) -> None:
        if event.envelope.id not in failed_once:
            failed_once.add(event.envelope.id)
            raise TransientError("try again later")

    toy = toy_subscriber({("question.created", 1): SideEffect(flaky)})
    event = question_event()
    traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
    async with (
        broker(settings) as channel,
        running_consumer(settings, toy, retry_delays="0.2"),
    ):
        await channel.default_exchange.publish(
            envelope_message(event, headers={"traceparent": traceparent}), toy.queue
        )

        def attempts() -> list[ReadableSpan]:
            found = _with_id(named(spans, f"process {toy.queue}"), str(event.id))
            return found if len(found) == 2 else []

        first, second = await poll("both attempts' process spans", attempts)
    assert [(s.attributes or {})["qa.outcome"] for s in (first, second)] == ["failed", "applied"]
    assert (first.attributes or {})["error.type"] == "TransientError"
    for span in (first, second):
        assert hex_trace(span) == TRACE_ID and _parent_id(span) == CLIENT_SPAN
