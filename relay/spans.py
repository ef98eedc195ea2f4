"""The relay's spans: one CLIENT ``send`` span per batch, one PRODUCER ``send`` per event.

Only built while tracing is on (``outbox.tracing.enabled()``); the pipeline never calls
in here otherwise. The batch span links to every row's stored creation context (the
messaging conventions for batch sends; the SDK keeps ``OTEL_SPAN_LINK_COUNT_LIMIT``
links, 128 by default). Each row that carries a stored context also gets its own
``send`` span as a child of that context, so the publish shows up inside the event's
trace next to the request that wrote it and the subscribers that process it. The
stored ``traceparent`` is published unchanged as an AMQP header: the relay adds no
per-row header work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from outbox import tracing

if TYPE_CHECKING:
    from relay.publisher import BatchOutcome
    from relay.store import PendingRow


def _name(exchange: str) -> str:
    return f"send {exchange or '(default)'}"


class BatchSpans:
    """Spans of one claimed batch, ended by :meth:`finish` with the batch's outcome."""

    def __init__(self, rows: Sequence[PendingRow]) -> None:
        tracer = tracing.tracer()
        exchanges = {row.exchange for row in rows}
        common = {
            tracing.SYSTEM: "rabbitmq",
            tracing.OPERATION_NAME: "send",
            tracing.OPERATION_TYPE: "send",
        }
        contexts = [(row, tracing.span_context_of(row.headers)) for row in rows]
        batch_attributes: dict[str, str | int] = {**common, tracing.BATCH_COUNT: len(rows)}
        if len(exchanges) == 1:
            batch_attributes[tracing.DESTINATION] = next(iter(exchanges))
        self.batch = tracer.start_span(
            _name(next(iter(exchanges))) if len(exchanges) == 1 else "send",
            kind=SpanKind.CLIENT,
            links=[Link(context) for _, context in contexts if context is not None],
            attributes=batch_attributes,
        )
        self.rows: dict[int, Span] = {}
        for row, context in contexts:
            if context is None:
                continue
            parent = set_span_in_context(NonRecordingSpan(context))
            self.rows[row.id] = tracer.start_span(
                _name(row.exchange),
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    **common,
                    tracing.DESTINATION: row.exchange,
                    tracing.ROUTING_KEY: row.routing_key,
                    tracing.MESSAGE_ID: str(row.event_id),
                    "qa.outbox.id": row.id,
                },
            )

    def finish(self, outcome: BatchOutcome | None) -> None:
        """End every span: failed rows carry ``error.type`` and an error status."""
        for row_id, span in self.rows.items():
            reason = outcome.reasons.get(row_id) if outcome is not None else "abandoned"
            if outcome is not None and row_id in outcome.deferred:
                span.set_attribute("qa.relay.deferred", True)
            elif reason is not None:
                span.set_attribute("error.type", reason)
                span.set_status(
                    Status(StatusCode.ERROR, outcome.failed.get(row_id) if outcome else reason)
                )
            span.end()
        if outcome is None or outcome.failed:
            failed = len(outcome.failed) if outcome is not None else len(self.rows)
            self.batch.set_attribute("qa.relay.failed", failed)
        self.batch.end()
