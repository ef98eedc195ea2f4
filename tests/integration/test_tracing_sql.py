"""SQL spans of a subscriber (psycopg instrumentation, as ``qa-consumer run`` sets it up):
a projection's statements are children of the batch's process span; the start-up probe
and inbox retention start no traces of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumers.feed import SUBSCRIBER as FEED
from outbox import tracing
from outbox.settings import Settings
from tests.integration.test_feed_support import (
    broker,
    envelope_message,
    poll,
    publish,
    question_event,
    running_consumer,
)
from tests.support.otel import spans_fixture  # noqa: F401


@pytest.fixture
def sql_spans(spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    tracing.instrument_psycopg()
    try:
        yield spans
    finally:
        PsycopgInstrumentor().uninstrument()  # later tests' connections stay untraced


def _sql(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT
        and s.instrumentation_scope is not None
        and "psycopg" in s.instrumentation_scope.name
    ]


def _statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def test_projection_statements_are_children_of_the_batch_span(
    settings: Settings, sql_spans: InMemorySpanExporter
) -> None:
    event = question_event()
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    async with broker(settings) as channel, running_consumer(settings):
        await publish(
            channel, envelope_message(event, headers={"traceparent": traceparent}), event.type
        )

        def feed_insert() -> list[ReadableSpan]:
            return [
                s
                for s in _sql(sql_spans)
                if "feed.questions" in _statement(s) and "INSERT" in _statement(s).upper()
            ]

        (insert, *_) = await poll("the projection's INSERT span", feed_insert)
    batches = {
        s.context.span_id: s
        for s in sql_spans.get_finished_spans()
        if s.name == f"process {FEED.queue}"
        and "messaging.batch.message_count" in (s.attributes or {})
        and s.context is not None
    }
    assert insert.parent is not None and insert.parent.span_id in batches
    batch = batches[insert.parent.span_id]
    assert batch.context is not None and insert.context is not None
    assert insert.context.trace_id == batch.context.trace_id
    assert any(f"{link.context.trace_id:032x}" in traceparent for link in batch.links)
    # The start-up probe and the inbox retention run (at start) made no root SQL spans.
    assert all(s.parent is not None for s in _sql(sql_spans))
