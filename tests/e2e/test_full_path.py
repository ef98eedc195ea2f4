"""The whole path with the real console scripts: HTTP -> outbox -> relay -> RabbitMQ -> feed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert

from outbox.models import ApiToken
from outbox.tokens import hash_token, new_token
from tests.support.tcpproxy import free_port

BIN = Path(sys.executable).parent


class Proc:
    """A console script running as a subprocess, its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(BIN / self.args[0]), *self.args[1:]], env=self.env, stdout=log, stderr=log
        )
        return self

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


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
    port = free_port()
    env = {
        **os.environ,
        **services,
        "QA_API_PORT": str(port),
        "QA_RELAY_METRICS_PORT": "0",
        "QA_CONSUMER_METRICS_PORT": "0",
        "QA_ARCHIVER_METRICS_PORT": "0",
        "QA_STARTUP_TIMEOUT_SECONDS": "20",
    }
    procs = {
        "api": Proc("api", ["qa-api"], env, tmp_path),
        "relay": Proc("relay", ["qa-relay"], env, tmp_path),
        "feed": Proc("feed", ["qa-consumer", "feed"], env, tmp_path),
    }
    for proc in procs.values():
        proc.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("API ready", lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200)
        yield {"base": base, "procs": procs}
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
        # A clean SIGTERM stop exits 0; anything else is a bug worth seeing.
        for name, code in codes.items():
            if code not in (0, -9, None):
                print(f"{name} exited {code}:\n{procs[name].log()}")


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

    # The relay dies; an answer posted meanwhile is committed with its event...
    procs["relay"].kill()
    second = httpx.post(
        f"{base}/questions/{question_id}/answers",
        json={"body": "Raft-based, too."},
        headers=auth,
        timeout=10,
    )
    assert second.status_code == 201, second.text
    time.sleep(1.0)  # give a wrongly-running relay time to publish; none should
    assert _feed_item(base, subject)["answer_count"] == 1, "published without a relay?"

    # ...and delivered once a relay runs again.
    procs["relay"].start()
    item = wait_for(
        "answer delivered after relay restart",
        lambda: (i := _feed_item(base, subject)) and i["answer_count"] == 2 and i,
    )
    question = httpx.get(f"{base}/questions/{question_id}", timeout=5).json()
    assert len(question["answers"]) == 2
    assert {a["author"] for a in question["answers"]} == {user}
