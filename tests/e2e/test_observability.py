"""The real processes with OTEL_TRACES_EXPORTER=console and JSON logs: one trace id in the
API's, the relay's and the feed's output; no secret in any process's output."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from outbox.models import ApiToken
from outbox.tokens import hash_token, new_token
from tests.support.procs import ManagedProcess, api_base, spawn

DB_PASSWORD = f"pw-{uuid.uuid4().hex}"  # trust auth accepts any password: it only must not leak


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def json_log_lines(text_: str) -> list[dict[str, Any]]:
    """The JSON log lines of a process's output (console spans are multi-line documents)."""
    entries = []
    for line in text_.splitlines():
        if line.startswith('{"time"'):
            entries.append(json.loads(line))
    return entries


def span_trace_ids(text_: str) -> set[str]:
    """Trace ids of the console exporter's span documents (``"trace_id": "0x..."``)."""
    return set(re.findall(r'"trace_id": "0x([0-9a-f]{32})"', text_))


def test_one_trace_id_across_api_relay_and_feed_and_no_secrets(
    services: dict[str, str], db: Engine, tmp_path: Path
) -> None:
    url = make_url(services["QA_DATABASE_URL"]).set(password=DB_PASSWORD)
    env = {
        **services,
        "QA_DATABASE_URL": url.render_as_string(hide_password=False),
        "QA_LOG_FORMAT": "json",
        "QA_LOG_LEVEL": "DEBUG",
        "OTEL_TRACES_EXPORTER": "console",
    }
    procs: dict[str, ManagedProcess] = {
        kind: spawn(kind, tmp_path, env) for kind in ("api", "relay", "feed")
    }
    token = new_token()
    with db.begin() as conn:
        conn.execute(insert(ApiToken).values(user_name="otel-e2e", token_hash=hash_token(token)))
    trace_id = uuid.uuid4().hex
    try:
        for proc in procs.values():
            proc.start()
        base = api_base(procs["api"])
        auth = {"Authorization": f"Bearer {token}"}
        subject = f"otel-{uuid.uuid4().hex[:8]}"
        created = httpx.post(
            f"{base}/questions",
            json={"title": "Traced?", "body": "b", "subject": subject, "grade": 3},
            headers=auth,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        question_id = created.json()["id"]
        answer = httpx.post(
            f"{base}/questions/{question_id}/answers",
            json={"body": "Yes."},
            headers={**auth, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        with db.connect() as conn:
            event_id = conn.execute(
                text(
                    "SELECT event_id FROM qa.outbox WHERE aggregate_id = :q"
                    " AND event_type = 'answer.created'"
                ),
                {"q": question_id},
            ).scalar_one()

        def applied() -> bool:
            with db.connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT 1 FROM subscribers.inbox WHERE event_id = :e"), {"e": event_id}
                    ).first()
                )

        wait_for("the answer applied by the feed", applied)
        # Spans are exported when they end; the feed's process span ends after its ack.
        for name in ("api", "relay", "feed"):
            wait_for(
                f"the trace id in the {name}'s spans",
                lambda n=name: trace_id in span_trace_ids(procs[n].log_text()),
            )
    finally:
        for proc in procs.values():
            proc.terminate()

    api_lines = json_log_lines(procs["api"].log_text())
    access = [e for e in api_lines if e["logger"] == "qa.api.access"]
    traced = [e for e in access if e.get("trace_id") == trace_id]
    assert len(traced) == 1, access
    line = traced[0]
    assert (line["method"], line["route"], line["status"]) == (
        "POST",
        "/questions/{question_id}/answers",
        201,
    )
    assert line["request_id"] and line["span_id"]
    # qa-consumer instruments psycopg: the feed's statements are spans too.
    assert re.search(r'"db\.system(\.name)?": "postgresql"', procs["feed"].log_text())
    for name, proc in procs.items():
        output = proc.log_text()
        assert json_log_lines(output), f"{name} wrote no JSON log line"
        assert DB_PASSWORD not in output, f"{name} logged the database password"
        assert token not in output, f"{name} logged a bearer token"
        assert ":guest@" not in output, f"{name} logged the broker password"
