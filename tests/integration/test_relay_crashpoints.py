"""``qa-relay`` killed at each crash point of its batch loop loses nothing.

Each test inserts rows, starts a real ``qa-relay`` armed with ``QA_TEST_HOOKS=1`` and
``QA_RELAY_CRASH_POINT`` (``relay/crashpoints.py``), sees it exit 137 at that point,
then starts a normal ``qa-relay`` and checks that every row reaches a test queue and is
marked published. The armed relay claims with a batch larger than anything pending, so
its first batch holds all of the test's rows and the point is hit on that batch:

* ``after_claim``: nothing was sent, so every row arrives exactly once;
* ``after_confirm``: the broker confirmed every row (they are already in the queue) but
  none is marked, so every row arrives exactly twice - the at-least-once price, and the
  proof that the point sits between confirm and mark;
* ``after_publish``: the publishes were written but no confirm was looked at; whether a
  row reached the queue before the exit depends on timing, so duplicates are reported,
  not asserted.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from outbox.settings import Settings
from relay.crashpoints import EXIT_CODE, Plan, load
from tests.integration.test_relay_support import (
    Collector,
    Row,
    collector,
    eventually,
    insert_rows,
    outbox_state,
    published_ids,
    row_params,
    unique_lock_key,
)
from tests.support.procs import ManagedProcess, spawn

ROWS = 30


@pytest.fixture
def relay_env(settings: Settings) -> dict[str, str]:
    """A lock key of the test's own, and one batch big enough for everything pending."""
    return {
        "QA_RELAY_LOCK_KEY": str(unique_lock_key()),
        "QA_RELAY_BATCH_SIZE": "1000",
        "QA_RELAY_POLL_INTERVAL_SECONDS": "0.2",
    }


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ManagedProcess]]:
    procs: list[ManagedProcess] = []
    yield procs
    for proc in procs:
        proc.kill()


def _armed(
    tmp_path: Path, env: dict[str, str], point: str, started: list[ManagedProcess]
) -> ManagedProcess:
    overrides = {
        **env,
        "QA_TEST_HOOKS": "1",
        "QA_RELAY_CRASH_POINT": point,
        "QA_RELAY_CRASH_AFTER": "1",
    }
    proc = spawn("relay", tmp_path, overrides, name=f"relay-{point}")
    started.append(proc)
    return proc.start(wait=False)


async def _crashes(proc: ManagedProcess, point: str) -> None:
    await eventually(lambda: not proc.alive, 60, interval=0.1, what=f"exit at {point}")
    assert proc.returncode == EXIT_CODE, proc.log_tail()
    assert f"test crash point {point} reached (call 1)" in proc.log_text(), proc.log_tail()


async def _normal_relay_delivers_all(
    tmp_path: Path,
    env: dict[str, str],
    started: list[ManagedProcess],
    db: Engine,
    col: Collector,
    rows: list[Row],
) -> Counter[str]:
    normal = spawn("relay", tmp_path, env, name="relay-normal")
    started.append(normal)
    normal.start()
    await col.wait_for({str(r.event_id) for r in rows}, within=30)
    ids = [r.id for r in rows]
    await eventually(lambda: len(published_ids(db, ids)) == len(ids), 30, what="all marked")
    assert normal.alive, normal.log_tail()
    return Counter(col.ids())


def _unmarked(db: Engine, rows: list[Row]) -> list[int]:
    state = outbox_state(db, [r.id for r in rows])
    return [i for i, r in state.items() if r["published_at"] is None]


async def test_crash_after_claim_publishes_nothing_and_loses_nothing(
    settings: Settings, db: Engine, tmp_path: Path, relay_env: dict[str, str], started: list
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with collector(settings.amqp_url.get_secret_value(), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(ROWS)])
        await _crashes(_armed(tmp_path, relay_env, "after_claim", started), "after_claim")
        assert len(_unmarked(db, rows)) == ROWS
        seen = await _normal_relay_delivers_all(tmp_path, relay_env, started, db, col, rows)
    assert {seen[str(r.event_id)] for r in rows} == {1}, "a claim alone must send nothing"


async def test_crash_after_publish_before_confirm_loses_nothing(
    settings: Settings, db: Engine, tmp_path: Path, relay_env: dict[str, str], started: list
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with collector(settings.amqp_url.get_secret_value(), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(ROWS)])
        await _crashes(_armed(tmp_path, relay_env, "after_publish", started), "after_publish")
        assert len(_unmarked(db, rows)) == ROWS, "nothing is marked without its confirm"
        # Whatever reached the queue before the restart is not marked: it comes again.
        early = set(col.ids())
        await _normal_relay_delivers_all(tmp_path, relay_env, started, db, col, rows)
        await eventually(
            lambda: all(n == 2 for i, n in Counter(col.ids()).items() if i in early),
            15,
            what="a second copy of every row delivered before the restart",
        )
    print(f"after_publish: {len(early)} of {ROWS} rows had arrived before the restart")


async def test_crash_after_confirm_before_mark_republishes_every_row(
    settings: Settings, db: Engine, tmp_path: Path, relay_env: dict[str, str], started: list
) -> None:
    key = f"test.{uuid.uuid4().hex}"
    async with collector(settings.amqp_url.get_secret_value(), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(ROWS)])
        await _crashes(_armed(tmp_path, relay_env, "after_confirm", started), "after_confirm")
        # Confirmed means enqueued: every row is in the queue, and none is marked.
        await col.wait_for({str(r.event_id) for r in rows}, within=15)
        assert len(_unmarked(db, rows)) == ROWS
        await _normal_relay_delivers_all(tmp_path, relay_env, started, db, col, rows)
        await eventually(lambda: len(col.messages) >= 2 * ROWS, 15, what="the re-publishes")
    seen = Counter(col.ids())
    assert {seen[str(r.event_id)] for r in rows} == {2}, seen


async def test_hooks_are_inert_without_qa_test_hooks(
    settings: Settings, db: Engine, tmp_path: Path, relay_env: dict[str, str], started: list
) -> None:
    """A crash point named without QA_TEST_HOOKS=1 (as in any production env) does nothing."""
    key = f"test.{uuid.uuid4().hex}"
    env = {**relay_env, "QA_RELAY_CRASH_POINT": "after_claim", "QA_RELAY_CRASH_AFTER": "1"}
    async with collector(settings.amqp_url.get_secret_value(), key) as col:
        rows = insert_rows(db, [row_params(key) for _ in range(ROWS)])
        seen = await _normal_relay_delivers_all(tmp_path, env, started, db, col, rows)
    assert {seen[str(r.event_id)] for r in rows} == {1}
    assert "test crash point" not in started[0].log_text()


@pytest.mark.parametrize(
    ("environ", "plan"),
    [
        ({}, Plan()),
        ({"QA_RELAY_CRASH_POINT": "after_claim"}, Plan()),
        ({"QA_TEST_HOOKS": "0", "QA_RELAY_CRASH_POINT": "after_claim"}, Plan()),
        ({"QA_TEST_HOOKS": "1"}, Plan()),
        ({"QA_TEST_HOOKS": "1", "QA_RELAY_CRASH_POINT": "after_confirm"}, Plan("after_confirm")),
        (
            {
                "QA_TEST_HOOKS": "1",
                "QA_RELAY_CRASH_POINT": "after_publish",
                "QA_RELAY_CRASH_AFTER": "7",
                "QA_RELAY_CRASH_FLUSH_SECONDS": "0.5",
            },
            Plan("after_publish", 7, 0.5),
        ),
    ],
)
def test_crash_plan_from_environment(environ: dict[str, str], plan: Plan) -> None:
    assert load(environ) == plan


@pytest.mark.parametrize(
    "environ",
    [
        {"QA_TEST_HOOKS": "1", "QA_RELAY_CRASH_POINT": "after_clam"},
        {"QA_TEST_HOOKS": "1", "QA_RELAY_CRASH_POINT": "after_claim", "QA_RELAY_CRASH_AFTER": "0"},
    ],
)
def test_a_mistyped_crash_plan_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        load(environ)
