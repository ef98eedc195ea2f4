"""A ``qa-api`` subprocess on a free port, a bearer token for it, and seeded questions."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench.common import poll_until
from bench.env import BenchEnv, free_port
from bench.procs import Proc
from outbox.tokens import hash_token, new_token


def create_token(env: BenchEnv, user: str = "bench") -> str:
    """A bearer token stored hashed, as ``qa-ops tokens create`` does."""
    token = new_token()
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO qa.api_tokens (user_name, token_hash) VALUES (%s, %s)",
            (user, hash_token(token)),
        )
    return token


def http_json(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


class ApiProc(Proc):
    """``qa-api`` on its own port, ready once ``/healthz`` answers. ``without_outbox``
    runs the benchmark's variant without the outbox write (``bench/no_outbox.py``)."""

    def __init__(
        self,
        env: BenchEnv,
        log_path: Path,
        profile_path: Path | None = None,
        without_outbox: bool = False,
        **env_overrides: str,
    ) -> None:
        self.port = free_port()
        super().__init__(
            ["python", "-m", "bench.no_outbox"] if without_outbox else ["qa-api"],
            env.process_env(QA_API_HOST="127.0.0.1", QA_API_PORT=str(self.port), **env_overrides),
            log_path,
            profile_path,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            try:
                return http_json("GET", f"{self.base}/healthz")[0] == 200
            except OSError:
                return False

        poll_until(ready, timeout, interval=0.1, alive=self.check_alive)

    def seed_questions(self, token: str, count: int) -> list[str]:
        ids = []
        for n in range(count):
            status, body = http_json(
                "POST",
                f"{self.base}/questions",
                token,
                {
                    "title": f"Bench question {n}",
                    "body": "What is the benchmark measuring?",
                    "subject": "math",
                    "grade": 1 + n % 12,
                },
            )
            if status != 201:
                raise RuntimeError(f"POST /questions answered {status}")
            ids.append(str(body["id"]))
        time.sleep(0)
        return ids
