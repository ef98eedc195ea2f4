"""Replay semantics of the store under concurrency and odd letters (real PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy import Engine

from outbox import deadletters as store
from outbox.headers import to_jsonable
from tests.integration.test_dlq_cli import add_letter, audit_rows, outbox_rows, status_of


def test_concurrent_replays_of_one_letter_write_one_outbox_row(db: Engine) -> None:
    letter = add_letter(db, f"test.{uuid.uuid4().hex[:12]}")
    results: list[store.ActionResult] = []
    start = threading.Barrier(8)

    def replay(n: int) -> None:
        start.wait()
        results.append(store.replay(db, letter, f"op-{n}"))

    threads = [threading.Thread(target=replay, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.outcome for r in results) == ["already replayed"] * 7 + ["replayed"]
    assert all(r.ok for r in results)
    assert len(outbox_rows(db, letter)) == 1
    assert status_of(db, letter) == "replayed"
    assert len(audit_rows(db, letter)) == 8


def test_replay_of_a_letter_without_a_uuid_message_id_gets_a_new_event_id(db: Engine) -> None:
    letter = add_letter(db, f"test.{uuid.uuid4().hex[:12]}", message_id="legacy-42")
    result = store.replay(db, letter, "ops")
    assert result.ok and result.note and "legacy-42" in result.note
    (row,) = outbox_rows(db, letter)
    assert isinstance(row["event_id"], uuid.UUID)
    assert "not a UUID" in audit_rows(db, letter)[0]["outcome"]


def test_replay_of_a_broker_dead_letter_drops_the_broker_bookkeeping(db: Engine) -> None:
    death: list[dict[str, Any]] = [{"reason": "delivery_limit", "queue": "feed.events"}]
    headers = {"x-death": death, "x-delivery-count": 21, "x-first-death-queue": "feed.events"}
    letter = add_letter(
        db,
        f"test.{uuid.uuid4().hex[:12]}",
        headers=to_jsonable({**headers, "keep": "me"}),
        disposition="delivery-limit",
        error_class="DeliveryLimitExceeded",
    )
    assert store.replay(db, letter, "ops").ok
    (row,) = outbox_rows(db, letter)
    assert row["headers"]["keep"] == "me"
    assert not {"x-death", "x-delivery-count", "x-first-death-queue"} & row["headers"].keys()
    assert row["headers"]["x-history"][-1]["disposition"] == "delivery-limit"


def test_replay_refuses_a_queue_that_is_not_a_known_consumer_queue(db: Engine) -> None:
    """x-failed-queue comes from headers anyone publishing to feed.dead controls."""
    letter = add_letter(db, f"test.{uuid.uuid4().hex[:12]}", failed_queue="billing.payouts")
    with db.connect() as conn:
        preview = store.preview(conn, letter)
    assert not preview.ok and "billing.payouts" in preview.outcome
    result = store.replay(db, letter, "mallory")
    assert not result.ok and "not a replayable consumer queue" in result.outcome
    assert outbox_rows(db, letter) == []
    assert status_of(db, letter) == "dead"
    (audit,) = audit_rows(db, letter)
    assert audit["actor"] == "mallory" and audit["outcome"].startswith("refused")
