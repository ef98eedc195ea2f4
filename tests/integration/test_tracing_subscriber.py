"""A subscriber's process spans continue the trace the message carries (its traceparent)."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine

from consumers.feed import SUBSCRIBER as FEED
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    amqp_message,
    broker,
    dead_letters,
    envelope_message,
    feed_row,
    poll,
    publish,
    question_event,
    running_consumer,
)
from tests.support.otel import spans_fixture  # noqa: F401


def _process_spans(spans: InMemorySpanExporter, event_id: str | None = None) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if s.name == f"process {FEED.queue}"
        and s.kind is SpanKind.CONSUMER
        and (event_id is None or (s.attributes or {}).get("messaging.message.id") == event_id)
    ]


async def test_process_span_joins_the_trace_of_the_message(
    settings: Settings, db: Engine, spans: InMemorySpanExporter
) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traced, untraced = question_event(), question_event()

    def span_of(event_id: str) -> list[ReadableSpan]:
        return _process_spans(spans, event_id)

    async with broker(settings) as channel, running_consumer(settings):
        headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
        await publish(channel, envelope_message(traced, headers=headers), traced.type)
        await publish(channel, envelope_message(untraced), untraced.type)
        await poll("traced question's process span", lambda: span_of(str(traced.id)))
        await poll(
            "untraced question applied",
            lambda: feed_row(db, uuid.UUID(untraced.data["question_id"])),
        )
    assert feed_row(db, uuid.UUID(traced.data["question_id"])) is not None

    (span,) = span_of(str(traced.id))
    assert span.context is not None and format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent
    attributes = span.attributes or {}
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.destination.name"] == FEED.queue
    assert attributes["messaging.consumer.group.name"] == "feed"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["qa.outcome"] == "applied"
    # A message without a traceparent gets no per-delivery span (no stray trace).
    assert not span_of(str(untraced.id))
    # One batch span links to the traced delivery's context.
    batches = [
        s
        for s in _process_spans(spans)
        if any(format(link.context.trace_id, "032x") == trace_id for link in s.links)
    ]
    assert len(batches) == 1
    assert "messaging.message.id" not in (batches[0].attributes or {})
    assert (batches[0].attributes or {})["messaging.batch.message_count"] >= 1


async def test_a_dead_lettered_delivery_is_an_error_span_in_its_trace(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traceparent = f"00-{trace_id}-{parent}-01"
    message_id = str(uuid.uuid4())
    poison = amqp_message(b"{not json", message_id=message_id, headers={"traceparent": traceparent})
    async with (
        broker(settings) as channel,
        dead_letters(settings) as dead,
        running_consumer(settings),
    ):
        await publish(channel, poison, "question.created")
        (letter,) = await poll("the dead letter", lambda: dead.by_id.get(message_id))
        (span,) = await poll("its process span", lambda: _process_spans(spans, message_id))
    # The dead letter keeps the trace context, so a replay can continue the trace.
    assert (letter.headers or {})["traceparent"] == traceparent
    assert span.context is not None and format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent
    assert span.status.status_code is StatusCode.ERROR
    attributes = span.attributes or {}
    assert attributes["qa.outcome"] == "failed"
    assert attributes["error.type"]
