"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables; off by default.

``OTEL_TRACES_EXPORTER`` picks the exporters (``otlp``, ``console``, comma-separated;
unset or ``none``: tracing off). ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_TRACES_SAMPLER`` (and ``_ARG``) and ``OTEL_RESOURCE_ATTRIBUTES`` are read by the
SDK itself. With tracing off no SDK object exists: :func:`enabled` is ``False`` and every
caller skips its span work, so the cost is one attribute check.

Trace context crosses the outbox as W3C ``traceparent``/``tracestate`` entries of the
outbox row's headers, which the relay publishes as AMQP headers unchanged. So the
message carries its *creation* context (the ``create`` span written with the row, a
child of the API request), and a relay that is down for an hour breaks nothing.
Span names, kinds and attributes follow the OpenTelemetry messaging conventions for
RabbitMQ: ``create qa.events`` (PRODUCER), ``send qa.events`` (PRODUCER per message, a
CLIENT batch span with links), ``process <queue>`` (CONSUMER).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer

log = logging.getLogger("qa.tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SCOPE = "qa-outbox"

# Messaging semantic-convention attribute names.
SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"
MESSAGE_ID = "messaging.message.id"
DELIVERY_TAG = "messaging.rabbitmq.message.delivery_tag"
BATCH_COUNT = "messaging.batch.message_count"
CONSUMER_GROUP = "messaging.consumer.group.name"

_tracer: Tracer | None = None
_provider: trace.TracerProvider | None = None


def enabled() -> bool:
    """True when a tracer provider is installed (``OTEL_TRACES_EXPORTER`` or a test)."""
    return _tracer is not None


def tracer() -> Tracer:
    """The project's tracer; a no-op tracer while tracing is off."""
    return _tracer if _tracer is not None else trace.NoOpTracer()


def install(provider: trace.TracerProvider | None) -> None:
    """Use ``provider`` for the project's spans (``None``: tracing off). Tests install an
    SDK provider with an in-memory exporter; :func:`setup` installs the configured one."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


def provider() -> trace.TracerProvider | None:
    """The installed provider (for the official instrumentations), ``None`` when off."""
    return _provider


def instrument_psycopg() -> None:
    """Spans for every psycopg statement (connections opened after this call).

    Only for processes whose statements run inside spans (API requests, message
    processing): elsewhere each statement would start a trace of its own, so such a
    process runs its housekeeping statements inside :func:`untraced`.
    """
    if _provider is None:
        return
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_provider, skip_dep_check=True)


def untraced() -> contextlib.AbstractContextManager[None]:
    """Statements run inside record no spans (housekeeping outside any trace, such as a
    subscriber's start-up probe and inbox retention). A no-op while tracing is off."""
    if _provider is None:
        return contextlib.nullcontext()
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def exporters_from_env() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    return [name.strip().lower() for name in raw.split(",") if name.strip() not in ("", "none")]


def setup(
    default_service_name: str, console_out: TextIO | None = None
) -> trace.TracerProvider | None:
    """Build the tracer provider the ``OTEL_*`` variables ask for; ``None`` when off.

    The SDK is imported only here, so a process with tracing off never loads it.
    ``console_out`` is where the ``console`` exporter writes (stdout unless given: a CLI
    whose stdout is its ``--json`` output passes stderr).
    """
    names = exporters_from_env()
    if not names:
        install(None)
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # OTEL_SERVICE_NAME, when set, wins over the default. (Resource.create reads it too,
    # but the attributes passed to it win over what it reads.)
    service = os.environ.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    for name in names:
        if name == "console":
            # One JSON document per span on stdout as soon as it ends (people and tests).
            exporter = ConsoleSpanExporter(out=console_out or sys.stdout)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER: unsupported exporter %r ignored", name)
    trace.set_tracer_provider(provider)
    install(provider)
    return provider


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads W3C fields from AMQP headers, whose values may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("latin-1")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [str(key) for key in carrier]


_GETTER = _HeaderGetter()


def extract(headers: Mapping[str, Any] | None) -> Context:
    """The trace context carried by message or outbox headers (empty when none)."""
    return propagate.extract(headers or {}, getter=_GETTER)


def span_context_of(headers: Mapping[str, Any] | None) -> SpanContext | None:
    """The remote span context stored in ``headers``, or ``None``."""
    if not headers or TRACEPARENT not in headers:
        return None
    context = trace.get_current_span(extract(headers)).get_span_context()
    return context if context.is_valid else None


def trace_id_of(headers: Mapping[str, Any] | None) -> str | None:
    """The 32-hex trace id of stored headers (for operators), or ``None``."""
    context = span_context_of(headers)
    return format(context.trace_id, "032x") if context is not None else None


def links_to(headers: Mapping[str, Any] | None) -> list[Link]:
    context = span_context_of(headers)
    return [Link(context)] if context is not None else []


def create_span_headers(
    event_id: object, event_type: str, exchange: str, routing_key: str
) -> dict[str, str]:
    """Record the ``create`` span of one event; return its context as W3C headers.

    Called while the row is written (in the API request's context, so the span is a
    child of the server span). Empty when tracing is off.
    """
    if _tracer is None:
        return {}
    headers: dict[str, str] = {}
    with _tracer.start_as_current_span(
        f"create {exchange or '(default)'}",
        kind=SpanKind.PRODUCER,
        attributes={
            SYSTEM: "rabbitmq",
            OPERATION_NAME: "create",
            OPERATION_TYPE: "create",
            DESTINATION: exchange,
            ROUTING_KEY: routing_key,
            MESSAGE_ID: str(event_id),
            "qa.event.type": event_type,
        },
    ):
        propagate.inject(headers)
    return {k: v for k, v in headers.items() if k in (TRACEPARENT, TRACESTATE)}


@contextlib.contextmanager
def replay_span(
    event_id: object,
    queue: str,
    headers: Mapping[str, Any] | None,
    attributes: Mapping[str, str | int],
) -> Iterator[dict[str, str]]:
    """The PRODUCER ``replay <queue>`` span of an operator's dead-letter replay.

    A new span (in the operator's context, never a child of the message's trace) that
    LINKS to the context the message carries. The message keeps that context, so the
    subscriber's processing of the replay continues the original trace. Yields the W3C
    headers to add to the replayed message: none when it carries a context, else the
    replay span's own (the replay then starts the message's trace). Yields ``{}`` and
    records nothing while tracing is off.
    """
    if _tracer is None:
        yield {}
        return
    links = links_to(headers)
    with _tracer.start_as_current_span(
        f"replay {queue}",
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={
            SYSTEM: "rabbitmq",
            OPERATION_NAME: "replay",
            OPERATION_TYPE: "send",
            DESTINATION: "",  # the default exchange, straight to the queue that failed it
            ROUTING_KEY: queue,
            MESSAGE_ID: str(event_id),
            **attributes,
        },
    ):
        added: dict[str, str] = {}
        if not links:
            propagate.inject(added)
        yield {k: v for k, v in added.items() if k in (TRACEPARENT, TRACESTATE)}
