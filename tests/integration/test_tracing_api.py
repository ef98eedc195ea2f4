"""The API continues an incoming traceparent and stores the event's context in the outbox."""

from __future__ import annotations

import io
import json
import logging
import uuid

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, text

from outbox import logs
from outbox.settings import Settings
from tests.integration.test_api_helpers import make_user, question_payload, running
from tests.support.otel import hex_trace, named, spans_fixture  # noqa: F401

TRACE_ID = uuid.uuid4().hex
PARENT_SPAN = uuid.uuid4().hex[:16]


def stored_headers(db: Engine, question_id: str) -> dict[str, str]:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT headers FROM qa.outbox WHERE aggregate_id = :q"), {"q": question_id}
        ).scalar_one()


async def test_post_continues_the_trace_into_the_outbox_row(
    settings: Settings, db: Engine, spans: InMemorySpanExporter
) -> None:
    user = make_user(db)
    async with running(settings) as client:
        response = await client.post(
            "/questions",
            json=question_payload(),
            headers={**user.headers, "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
        )
    assert response.status_code == 201, response.text
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert hex_trace(server) == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_SPAN
    (create,) = named(spans, "create qa.events")
    assert create.kind is SpanKind.PRODUCER
    assert hex_trace(create) == TRACE_ID
    attributes = dict(create.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.destination.name"] == "qa.events"
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "question.created"
    headers = stored_headers(db, response.json()["id"])
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert trace_id == TRACE_ID
    assert create.context is not None and span_id == format(create.context.span_id, "016x")
    assert (
        attributes["messaging.message.id"]
        == json.loads(
            db.connect()
            .execute(
                text("SELECT convert_from(body, 'UTF8') FROM qa.outbox WHERE aggregate_id = :q"),
                {"q": response.json()["id"]},
            )
            .scalar_one()
        )["id"]
    )


async def test_tracing_off_stores_no_context(settings: Settings, db: Engine) -> None:
    user = make_user(db)
    async with running(settings) as client:
        response = await client.post(
            "/questions",
            json=question_payload(),
            headers={**user.headers, "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
        )
    assert response.status_code == 201
    assert stored_headers(db, response.json()["id"]) == {}


async def test_access_log_line_has_route_status_and_request_id_but_no_token(
    settings: Settings, db: Engine
) -> None:
    user = make_user(db)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    qa = logging.getLogger("qa")
    qa.addHandler(handler)
    saved = qa.level
    qa.setLevel(logging.DEBUG)
    try:
        async with running(settings) as client:
            created = await client.post(
                "/questions",
                json=question_payload(),
                headers={**user.headers, "X-Request-ID": "rq-1"},
            )
            question_id = created.json()["id"]
            await client.get(f"/questions/{question_id}?secret=x", headers={"X-Request-ID": "rq-2"})
    finally:
        qa.removeHandler(handler)
        qa.setLevel(saved)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_request = {e.get("request_id"): e for e in entries if e["logger"] == "qa.api.access"}
    post = by_request["rq-1"]
    assert (post["method"], post["route"], post["status"]) == ("POST", "/questions", 201)
    assert post["duration_ms"] >= 0
    get = by_request["rq-2"]
    assert get["route"] == "/questions/{question_id}"  # template, never the raw path
    assert user.token not in stream.getvalue()
    assert "secret=x" not in stream.getvalue() and question_id not in get["message"]
