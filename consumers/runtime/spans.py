"""A subscriber's spans: one CONSUMER ``process <queue>`` span per delivery, one per batch.

Only built while tracing is on (``outbox.tracing.enabled()``): the consumer checks that
once per batch and calls nothing here otherwise. Each delivery's span is a child of the
context the message carries (its ``traceparent`` header: the event's ``create`` span,
written with the outbox row inside the API request), so every subscriber's processing
joins the event's trace on every delivery. Retry copies and dead letters keep the
headers byte for byte, so a retried delivery joins the same trace. A message without a
``traceparent`` gets no per-delivery span (it would start a stray trace of its own).

The batch span links to every delivery's context (the messaging conventions for batch
processing; the SDK keeps ``OTEL_SPAN_LINK_COUNT_LIMIT`` links, 128 by default) and is
current while the batch is applied and settled. Spans end after settling, carrying how
each delivery ended (``qa.outcome``) and, for a failure, ``error.type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from outbox import tracing

if TYPE_CHECKING:
    from consumers.runtime.item import Item


def _outcome(item: Item) -> str:
    if item.error is not None:
        return "failed"
    if item.applied is None:
        # Stopped (cancelled) while the batch was applied or settled: the broker
        # redelivers it. Not a duplicate, which the inbox already had.
        return "interrupted"
    return "applied" if item.applied else "duplicate"


class BatchSpans:
    """Spans of one batch of deliveries, ended by :meth:`finish`."""

    def __init__(self, subscriber: str, queue: str, items: Sequence[Item]) -> None:
        tracer = tracing.tracer()
        common: dict[str, Any] = {
            tracing.SYSTEM: "rabbitmq",
            tracing.OPERATION_NAME: "process",
            tracing.OPERATION_TYPE: "process",
            tracing.DESTINATION: queue,
            tracing.CONSUMER_GROUP: subscriber,
        }
        self.items = items
        self.messages: dict[int, tuple[Item, Span]] = {}
        links: list[Link] = []
        for item in items:
            headers = item.message.headers or {}
            context = tracing.span_context_of(headers)
            if context is None:
                continue
            links.append(Link(context))
            self.messages[id(item)] = (
                item,
                tracer.start_span(
                    f"process {queue}",
                    context=tracing.extract(headers),
                    kind=SpanKind.CONSUMER,
                    attributes={
                        **common,
                        tracing.MESSAGE_ID: item.message.message_id or "",
                        tracing.DELIVERY_TAG: item.message.delivery_tag or 0,
                        tracing.ROUTING_KEY: item.message.routing_key or "",
                        "qa.redelivered": bool(item.message.redelivered),
                    },
                ),
            )
        self.batch = tracer.start_span(
            f"process {queue}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={**common, tracing.BATCH_COUNT: len(items)},
        )

    def finish(self) -> None:
        """End every span with the outcome of its delivery."""
        for item, span in self.messages.values():
            span.set_attribute("qa.outcome", _outcome(item))
            if item.event is not None:
                span.set_attribute("qa.event.type", item.event.envelope.type)
            if item.error is not None:
                span.set_attribute("error.type", type(item.error).__name__)
                span.set_status(Status(StatusCode.ERROR, str(item.error)[:200]))
            span.end()
        failed = sum(1 for item in self.items if item.error is not None)
        if failed:
            self.batch.set_attribute("qa.failed", failed)
        self.batch.end()
