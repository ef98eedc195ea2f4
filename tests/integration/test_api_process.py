"""``qa-api`` as a real process: serves over uvicorn, stops on SIGTERM, fails fast at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.tcpproxy import free_port

QA_API = str(Path(sys.executable).with_name("qa-api"))


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("qa-api did not become healthy")


@pytest.fixture(name="api_process")
def api_process_fixture(services: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, **services, "QA_API_PORT": str(port), "QA_API_MAX_BODY_BYTES": "4096"}
    # A file, not a pipe nobody reads: a busy API (one access log line per request) would
    # fill a pipe's buffer and block on its next log line.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([QA_API], env=env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_healthy(base, proc)
        except AssertionError:
            log.seek(0)
            raise AssertionError(log.read().decode(errors="replace")[-4000:]) from None
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_serves_and_stops_cleanly_on_sigterm(
    api_process: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, proc = api_process
    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.headers["X-Request-ID"]

    def chunks() -> Iterator[bytes]:
        yield b'{"body": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    # A real chunked upload over the wire, past the 4096-byte limit.
    with httpx.Client(timeout=10) as http:
        too_big = http.post(
            f"{base}/questions",
            content=chunks(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        )
    assert too_big.status_code in (401, 413)  # auth runs after the body is read: expect 413
    assert too_big.status_code == 413

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_unreachable_database_exits_1_with_one_line_and_no_secret() -> None:
    port = free_port()  # nothing listens there
    env = {
        **os.environ,
        "QA_DATABASE_URL": f"postgresql+psycopg://qa:s3cret-pw@127.0.0.1:{port}/qa",
        "QA_STARTUP_TIMEOUT_SECONDS": "1",
    }
    done = subprocess.run([QA_API], env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert "s3cret-pw" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("qa-api: cannot start:") and "unreachable" in last


def _worker_pids(parent: int) -> set[int]:
    """Pids of the uvicorn workers (multiprocessing spawn children) of ``parent``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def test_workers_serve_and_all_stop_on_sigterm(services: dict[str, str]) -> None:
    """QA_API_WORKERS=2: two worker processes behind one port; SIGTERM stops every one."""
    port = free_port()
    env = {**os.environ, **services, "QA_API_PORT": str(port), "QA_API_WORKERS": "2"}
    proc = subprocess.Popen([QA_API], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, deadline_s=90)
        deadline = time.monotonic() + 90
        while len(_worker_pids(proc.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.1)
        workers = _worker_pids(proc.pid)
        feed = httpx.get(f"{base}/feed", params={"limit": 1}, timeout=10)
        assert feed.status_code == 200 and "items" in feed.json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
