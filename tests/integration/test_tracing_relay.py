"""The relay's spans: a send span per event inside the event's trace, a batch span linking
to every event, and the stored traceparent published unchanged."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine

from outbox.settings import Settings
from tests.integration.test_relay_support import (
    collector,
    eventually,
    insert_rows,
    published_ids,
    row_params,
    running_relay,
    unique_lock_key,
)
from tests.support.otel import spans_fixture  # noqa: F401


async def test_send_spans_continue_the_stored_context(
    settings: Settings, db: Engine, spans: InMemorySpanExporter
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traceparent = f"00-{trace_id}-{parent}-01"
    async with collector(settings.amqp_url.get_secret_value(), key) as col:
        traced, untraced = insert_rows(
            db, [row_params(key, headers={"traceparent": traceparent}), row_params(key)]
        )
        async with running_relay(settings, relay_lock_key=unique_lock_key()):
            await col.wait_for({str(traced.event_id), str(untraced.event_id)})
            await eventually(
                lambda: published_ids(db, [traced.id, untraced.id]) == {traced.id, untraced.id},
                what="both marked",
            )
    (message,) = [m for m in col.messages if m.message_id == str(traced.event_id)]
    assert (message.headers or {})["traceparent"] == traceparent  # unchanged on the wire

    finished = spans.get_finished_spans()
    sends = [s for s in finished if s.kind is SpanKind.PRODUCER and s.name == "send qa.events"]
    (send,) = [
        s for s in sends if (s.attributes or {}).get("messaging.message.id") == str(traced.event_id)
    ]
    assert send.context is not None and format(send.context.trace_id, "032x") == trace_id
    assert send.parent is not None and format(send.parent.span_id, "016x") == parent
    assert (send.attributes or {})["messaging.rabbitmq.destination.routing_key"] == key
    # The row without a stored context gets no per-event span (it would start a stray trace).
    assert not [
        s
        for s in sends
        if (s.attributes or {}).get("messaging.message.id") == str(untraced.event_id)
    ]
    batches = [s for s in finished if s.kind is SpanKind.CLIENT]
    linked = [
        b
        for b in batches
        if any(format(link.context.trace_id, "032x") == trace_id for link in b.links)
    ]
    assert len(linked) == 1
    assert (linked[0].attributes or {})["messaging.batch.message_count"] >= 1
