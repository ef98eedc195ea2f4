"""A dead-letter replay keeps the message's trace context and records a new span linked to
it; the replayed delivery is processed in the original trace."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine

from consumers.feed import SUBSCRIBER as FEED
from outbox import deadletters as store
from outbox.headers import to_jsonable
from outbox.settings import Settings
from tests.integration.test_dlq_cli import QA_OPS, add_letter, outbox_rows
from tests.integration.test_feed_support import (
    broker,
    feed_row,
    poll,
    question_event,
    running_consumer,
)
from tests.integration.test_relay_support import running_relay, unique_lock_key
from tests.support.otel import hex_trace, named, spans_fixture  # noqa: F401


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def _traced_letter(db: Engine, traceparent: str, **overrides: object) -> int:
    kind = str(overrides.pop("event_type", f"test.{uuid.uuid4().hex[:12]}"))
    headers = {
        "x-error-class": "SchemaViolation",
        "x-failed-queue": "feed.events",
        "traceparent": traceparent,
        "tracestate": "vendor=1",
    }
    return add_letter(db, kind, headers=to_jsonable(headers), **overrides)


def test_replay_keeps_the_context_and_links_a_new_span_to_it(
    db: Engine, spans: InMemorySpanExporter
) -> None:
    traceparent, trace_id, parent = _traceparent()
    letter = _traced_letter(db, traceparent)
    result = store.replay(db, letter, "ops")
    assert result.ok
    (row,) = outbox_rows(db, letter)
    # The message keeps the original context: the subscriber continues the original trace.
    assert row["headers"]["traceparent"] == traceparent
    assert row["headers"]["tracestate"] == "vendor=1"

    (span,) = named(spans, "replay feed.events")
    assert span.kind is SpanKind.PRODUCER
    # A new trace, not a child of the message's context ...
    assert span.parent is None and hex_trace(span) != trace_id
    # ... linked to it.
    ((link_trace, link_span),) = [
        (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
        for link in span.links
    ]
    assert (link_trace, link_span) == (trace_id, parent)
    attributes = span.attributes or {}
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "feed.events"
    assert attributes["messaging.message.id"] == str(row["event_id"])
    assert attributes["qa.dead_letter.id"] == letter
    assert span.end_time is not None


def test_replay_of_an_untraced_letter_starts_the_trace_of_the_replay(
    db: Engine, spans: InMemorySpanExporter
) -> None:
    letter = add_letter(db, f"test.{uuid.uuid4().hex[:12]}")
    assert store.replay(db, letter, "ops").ok
    (span,) = named(spans, "replay feed.events")
    assert not span.links
    (row,) = outbox_rows(db, letter)
    _, trace_id, span_id, _ = row["headers"]["traceparent"].split("-")
    assert span.context is not None
    assert (trace_id, span_id) == (hex_trace(span), format(span.context.span_id, "016x"))


def test_replay_with_tracing_off_keeps_the_context_and_adds_none(db: Engine) -> None:
    traceparent, _, _ = _traceparent()
    traced = _traced_letter(db, traceparent)
    untraced = add_letter(db, f"test.{uuid.uuid4().hex[:12]}")
    assert store.replay(db, traced, "ops").ok and store.replay(db, untraced, "ops").ok
    assert outbox_rows(db, traced)[0]["headers"]["traceparent"] == traceparent
    assert "traceparent" not in outbox_rows(db, untraced)[0]["headers"]


def test_a_refused_replay_records_no_span(db: Engine, spans: InMemorySpanExporter) -> None:
    letter = add_letter(db, f"test.{uuid.uuid4().hex[:12]}", status="discarded")
    assert not store.replay(db, letter, "ops").ok
    assert not spans.get_finished_spans()


def test_qa_ops_replay_with_the_console_exporter_keeps_json_on_stdout(db: Engine) -> None:
    traceparent, trace_id, _ = _traceparent()
    letter = _traced_letter(db, traceparent)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "qa-ops-test"}
    done = subprocess.run(
        [QA_OPS, "dlq", "replay", str(letter), "--yes", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["outcome"] == "replayed"  # spans are not on stdout
    assert '"name": "replay feed.events"' in done.stderr
    assert f'"trace_id": "0x{trace_id}"' in done.stderr  # the link to the original context
    assert '"service.name": "qa-ops-test"' in done.stderr
    assert outbox_rows(db, letter)[0]["headers"]["traceparent"] == traceparent


def _process_spans(spans: InMemorySpanExporter, event_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in named(spans, f"process {FEED.queue}")
        if (s.attributes or {}).get("messaging.message.id") == event_id
    ]


async def test_the_replayed_delivery_is_processed_in_the_original_trace(
    settings: Settings, db: Engine, spans: InMemorySpanExporter
) -> None:
    traceparent, trace_id, parent = _traceparent()
    event = question_event()
    letter = _traced_letter(
        db,
        traceparent,
        message_id=str(event.id),
        event_type=event.type,
        body=event.to_bytes(),
    )
    assert store.replay(db, letter, "ops").ok
    (replay,) = named(spans, "replay feed.events")
    async with (
        broker(settings),  # the feed's queue exists before the relay publishes to it
        running_consumer(settings),
        running_relay(settings, relay_lock_key=unique_lock_key()),
    ):
        (process,) = await poll(
            "the replay's process span", lambda: _process_spans(spans, str(event.id))
        )
    assert feed_row(db, uuid.UUID(event.data["question_id"])) is not None
    assert hex_trace(process) == trace_id
    assert process.parent is not None and format(process.parent.span_id, "016x") == parent
    assert (process.attributes or {})["qa.outcome"] == "applied"
    # The relay's send span of the replay row is in the original trace too (default exchange).
    (send,) = [
        s
        for s in named(spans, "send (default)")
        if (s.attributes or {}).get("messaging.message.id") == str(event.id)
    ]
    assert hex_trace(send) == trace_id
    # The replay's own span is elsewhere, linked.
    assert hex_trace(replay) != trace_id
