"""Logging for every process: ``QA_LOG_FORMAT=text|json`` and per-context ids.

JSON is one object per line: ``time``, ``level``, ``logger``, ``message`` and whichever of
``request_id``, ``trace_id``, ``span_id``, ``event_id``, ``subscriber``, ``delivery_tag``
apply where the line was written (plus ``exc_info`` for exceptions). The ids come from
context variables: the API binds ``request_id`` per request, a subscriber binds
``event_id``/``subscriber``/``delivery_tag`` per message (:func:`bind`), and the trace and
span ids come from the current OpenTelemetry span when tracing is on. Text lines carry
the same ids as ``key=value`` suffixes.

Nothing here formats secrets: log lines carry redacted URLs (``settings.redact``) and no
request bodies or headers.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from opentelemetry import trace

LogFormat = Literal["text", "json"]
CONTEXT_KEYS = ("request_id", "trace_id", "span_id", "event_id", "subscriber", "delivery_tag")
# Library chatter kept at WARNING (aiormq logs connection URLs at DEBUG).
NOISY = ("aiormq", "aio_pika", "sqlalchemy.engine", "uvicorn.access")

_context: ContextVar[dict[str, Any] | None] = ContextVar("qa_log_context", default=None)


def bind_values(**fields: Any) -> object:
    """Add ``fields`` to the log context; returns a token for :func:`unbind`."""
    current = _context.get()
    return _context.set({**current, **fields} if current else fields)


def unbind(token: object) -> None:
    _context.reset(token)  # type: ignore[arg-type]


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Log lines written inside the block carry ``fields`` (e.g. ``event_id=...``)."""
    token = bind_values(**fields)
    try:
        yield
    finally:
        unbind(token)


def context_fields() -> dict[str, Any]:
    """The ids that apply here: bound fields plus the current span's trace and span ids."""
    fields = dict(_context.get() or {})
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        fields["trace_id"] = format(span_context.trace_id, "032x")
        fields["span_id"] = format(span_context.span_id, "016x")
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in context_fields().items():
            entry.setdefault(key, value)
        extra = getattr(record, "fields", None)  # logger.info(..., extra={"fields": {...}})
        if isinstance(extra, dict):
            for key, value in extra.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger message key=value...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_fields()  # extra "fields" are in the message already for people
        if not fields:
            return line
        suffix = " ".join(f"{key}={value}" for key, value in fields.items())
        head, sep, tail = line.partition("\n")  # keep a traceback below the ids
        return f"{head} {suffix}{sep}{tail}"


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger on stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
