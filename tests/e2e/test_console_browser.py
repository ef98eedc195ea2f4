"""The operators' console in a real browser (Debian's chromium driven by Playwright).

Real processes: qa-api, qa-relay, qa-consumer feed and qa-console on the session's
database and vhost. An operator signs in, finds a dead-letter group, replays it, sees the
group empty, and the replayed event reaches the feed through the relay and the consumer.

Set QA_CONSOLE_SCREENSHOTS=docs/img to refresh the README's screenshots.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.support.console_data import make_token, question_letter
from tests.support.procs import ManagedProcess, api_base, http_ok, spawn
from tests.support.tcpproxy import free_port

CHROMIUM = os.environ.get("QA_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def system(services: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    procs = {kind: spawn(kind, tmp_path, services) for kind in ("api", "relay", "feed")}
    port = free_port()
    env = {**os.environ, **services, "QA_CONSOLE_PORT": str(port)}
    procs["console"] = ManagedProcess(
        "console",
        ["qa-console"],
        env,
        tmp_path / "console.log",
        http_ok(f"http://127.0.0.1:{port}/login"),
    )
    try:
        for proc in procs.values():
            proc.start()
        yield {"api": api_base(procs["api"]), "console": f"http://127.0.0.1:{port}"}
    finally:
        for name, proc in procs.items():
            code = proc.terminate()
            if code not in (0, None):
                print(f"{name} exited {code}:\n{proc.log_tail()}")


def _parked_outbox_row(db: Engine) -> int:
    with db.begin() as conn:
        return int(
            conn.scalar(
                text(
                    "INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id,"
                    " routing_key, body, attempts, next_attempt_at)"
                    " VALUES (gen_random_uuid(), 'test.parked', 'test', '1', 'test.parked',"
                    " '\\x7b7d', 1, now() + interval '1 hour') RETURNING id"
                )
            )
        )


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("QA_CONSOLE_SCREENSHOTS")
    if target:
        shutil.copy(path, Path(target) / path.name)


def test_operator_replays_a_dead_letter_group_and_the_event_reaches_the_feed(
    system: dict[str, str], db: Engine, tmp_path: Path
) -> None:
    subject = f"console-{uuid.uuid4().hex[:10]}"
    func = f"apply_{uuid.uuid4().hex[:8]}"
    letter_id, event_id = question_letter(db, subject, func=func)
    operator = f"op-{uuid.uuid4().hex[:6]}"
    _, token = make_token(db, operator, "operator")
    base = system["console"]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_selector("#backlog")
            assert page.inner_text("#operator") == operator
            _shot(page, tmp_path, "console-overview")

            # The overview refreshes by itself: a row the relay will not touch for an hour
            # shows up in the backlog without a reload.
            before = int(page.inner_text("#backlog"))
            row = _parked_outbox_row(db)
            try:
                page.wait_for_function(
                    f"() => Number(document.querySelector('#backlog').innerText) > {before}"
                )
            finally:
                with db.begin() as conn:
                    conn.execute(text("DELETE FROM qa.outbox WHERE id = :id"), {"id": row})

            page.goto(f"{base}/dead-letters")
            row = page.locator("tr.group", has_text=f"consumers/feed.py:{func}")
            assert row.locator("td.count").inner_text() == "1"
            _shot(page, tmp_path, "console-dead-letters")

            row.get_by_role("link", name="open").click()
            page.wait_for_selector("#preview-replay")
            page.click(f"a[href='/dead-letters/{letter_id}']")
            page.wait_for_selector("#body")
            assert str(event_id) in page.inner_text("#body")
            _shot(page, tmp_path, "console-dead-letter")
            page.go_back()

            page.click("#preview-replay")
            page.wait_for_selector("#preview")
            assert "would replay to queue feed.events" in page.inner_text("#preview")
            page.click("#confirm")
            page.wait_for_selector("#applied")
            assert "1 of 1 ok" in page.inner_text("#applied")

            page.goto(f"{base}/dead-letters")
            assert page.locator("tr.group", has_text=f"consumers/feed.py:{func}").count() == 0

            # The API's documentation renders from its own assets (this machine is offline).
            page.goto(f"{system['api']}/docs")
            page.wait_for_selector(".opblock")
            page.goto(f"{system['api']}/redoc")
            page.get_by_text("/questions/{question_id}/answers").first.wait_for()
        finally:
            browser.close()

    def in_feed() -> Any:
        response = httpx.get(f"{system['api']}/feed", params={"subject": subject}, timeout=5)
        return [i for i in response.json()["items"] if i["title"].endswith(subject)]

    (item,) = wait_for("the replayed question in the feed", in_feed)
    assert item["subject"] == subject
