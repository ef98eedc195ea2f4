"""The whole path with the real console scripts: HTTP -> outbox -> relay -> RabbitMQ -> feed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, text

from outbox.models import ApiToken
from outbox.tokens import hash_token, new_token
from tests.support.procs import ManagedProcess, api_base, spawn


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
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


@pytest.fixture
def system(services: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """qa-api, qa-relay and qa-consumer feed as real processes, each ready."""
    procs: dict[str, ManagedProcess] = {
        kind: spawn(kind, tmp_path, services) for kind in ("api", "relay", "feed")
    }
    try:
        for proc in procs.values():
            proc.start()
        yield {"base": api_base(procs["api"]), "procs": procs}
    finally:
        codes = {name: proc.terminate() for name, proc in procs.items()}
        # A clean SIGTERM stop exits 0; anything else is a bug worth seeing.
        for name, code in codes.items():
            if code not in (0, None):
                print(f"{name} exited {code}:\n{procs[name].log_tail()}")


def _token(db: Engine, user: str) -> str:
    token = new_token()
    with db.begin() as conn:
        conn.execute(insert(ApiToken).values(user_name=user, token_hash=hash_token(token)))
    return token


def _feed_item(base: str, subject: str) -> dict[str, Any] | None:
    items = httpx.get(f"{base}/feed", params={"subject": subject}, timeout=5).json()["items"]
    return items[0] if items else None


def test_answer_reaches_the_feed_and_survives_a_relay_kill(
    system: dict[str, Any], db: Engine
) -> None:
    base, procs = system["base"], system["procs"]
    user = f"e2e-{uuid.uuid4().hex[:6]}"
    auth = {"Authorization": f"Bearer {_token(db, user)}"}
    subject = f"e2e-{uuid.uuid4().hex[:10]}"

    created = httpx.post(
        f"{base}/questions",
        json={
            "title": "What is a quorum queue?",
            "body": "In RabbitMQ.",
            "subject": subject,
            "grade": 11,
        },
        headers=auth,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    question_id = created.json()["id"]

    item = wait_for("question in the feed", lambda: _feed_item(base, subject))
    assert item["question_id"] == question_id
    assert item["answered"] is False and item["answer_count"] == 0

    answer = httpx.post(
        f"{base}/questions/{question_id}/answers",
        json={"body": "A replicated queue."},
        headers=auth,
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    item = wait_for(
        "answer counted in the feed",
        lambda: (i := _feed_item(base, subject)) and i["answer_count"] == 1 and i,
    )
    assert item["answered"] is True
    assert item["last_answer_at"] is not None

    # The author edits the question: the feed shows the new title and grade.
    edited = httpx.patch(
        f"{base}/questions/{question_id}",
        json={"title": "What is a quorum queue, really?", "grade": 12},
        headers=auth,
        timeout=10,
    )
    assert edited.status_code == 200, edited.text
    item = wait_for(
        "edit in the feed",
        lambda: (i := _feed_item(base, subject)) and i["grade"] == 12 and i,
    )
    assert item["title"] == "What is a quorum queue, really?"
    assert item["answer_count"] == 1

    # The relay dies; an answer posted meanwhile is committed with its event...
    procs["relay"].kill()
    second = httpx.post(
        f"{base}/questions/{question_id}/answers",
        json={"body": "Raft-based, too."},
        headers=auth,
        timeout=10,
    )
    assert second.status_code == 201, second.text
    with db.connect() as conn:
        pending = conn.execute(
            text(
                "SELECT count(*) FROM qa.outbox WHERE aggregate_id = :q"
                " AND event_type = 'answer.created' AND published_at IS NULL"
            ),
            {"q": question_id},
        ).scalar_one()
    assert pending == 1, "the answer's event must wait in the outbox while no relay runs"
    assert _feed_item(base, subject)["answer_count"] == 1

    # ...and delivered once a relay runs again.
    procs["relay"].start()
    item = wait_for(
        "answer delivered after relay restart",
        lambda: (i := _feed_item(base, subject)) and i["answer_count"] == 2 and i,
    )
    question = httpx.get(f"{base}/questions/{question_id}", timeout=5).json()
    assert len(question["answers"]) == 2
    assert {a["author"] for a in question["answers"]} == {user}
