"""How a subscriber's process span names the end of each delivery (``qa.outcome``)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumers.runtime.item import Item
from consumers.runtime.spans import BatchSpans
from tests.support.otel import spans_fixture  # noqa: F401


def _item(**state: Any) -> Item:
    message = SimpleNamespace(
        headers={"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"},
        message_id=str(uuid.uuid4()),
        delivery_tag=1,
        routing_key="question.created",
        redelivered=False,
    )
    return Item(message, **state)  # type: ignore[arg-type]


def test_each_delivery_span_says_how_it_ended(spans: InMemorySpanExporter) -> None:
    items = {
        "applied": _item(applied=True),
        "duplicate": _item(applied=False),
        "failed": _item(error=ValueError("bad")),
        # Cancelled while the batch was applied: neither applied nor failed, not settled.
        "interrupted": _item(),
    }
    BatchSpans("feed", "feed.events", list(items.values())).finish()
    outcomes = {
        (s.attributes or {}).get("messaging.message.id"): (s.attributes or {}).get("qa.outcome")
        for s in spans.get_finished_spans()
    }
    for expected, item in items.items():
        assert outcomes[item.message.message_id] == expected
