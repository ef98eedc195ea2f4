"""Structured logs: one JSON object per line with the ids bound where the line was written."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from outbox import logs


@pytest.fixture
def capture() -> logging.Logger:
    logger = logging.getLogger(f"qa.test.logs.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _lines(logger: logging.Logger, formatter: logging.Formatter) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return stream


def test_json_line_has_the_base_fields_and_bound_ids(capture: logging.Logger) -> None:
    stream = _lines(capture, logs.JsonFormatter())
    with logs.bind(event_id="e-1", subscriber="feed"), logs.bind(delivery_tag=7):
        capture.warning("applied %d", 3)
    capture.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "applied 3"
    assert first["level"] == "WARNING"
    assert first["logger"] == capture.name
    assert first["time"].endswith("+00:00")
    assert (first["event_id"], first["subscriber"], first["delivery_tag"]) == ("e-1", "feed", 7)
    assert "event_id" not in second and second["message"] == "outside"


def test_json_line_carries_the_current_span_ids(capture: logging.Logger) -> None:
    stream = _lines(capture, logs.JsonFormatter())
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        capture.info("inside a span")
    entry = json.loads(stream.getvalue())
    context = span.get_span_context()
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")


def test_json_exception_is_one_line_with_the_traceback(capture: logging.Logger) -> None:
    stream = _lines(capture, logs.JsonFormatter())
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        capture.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert "ValueError: boom" in entry["exc_info"]


def test_text_line_appends_ids(capture: logging.Logger) -> None:
    stream = _lines(capture, logs.TextFormatter())
    with logs.bind(request_id="r-9"):
        capture.info("hello")
    assert stream.getvalue().rstrip().endswith("hello request_id=r-9")


def test_setup_logging_picks_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.setup_logging("INFO", "json")
        logging.getLogger("qa.test").info("json please")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["message"] == "json please"
        logs.setup_logging("INFO", "text")
        logging.getLogger("qa.test").info("text please")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.endswith("INFO qa.test text please")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
