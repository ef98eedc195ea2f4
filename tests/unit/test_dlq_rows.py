"""Dead-letter rows (archiver side) and replay headers (CLI side), without services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from consumers.runtime.archive_store import jsonable, letter_row
from ops.dlq_render import safe
from outbox.deadletters import FAILURE_HEADERS, event_id_for, replay_headers
from outbox.headers import from_jsonable
from outbox.topology import H_HISTORY, H_REPLAYED_FROM


def message(headers: dict[str, Any], body: bytes = b"{}", **props: Any) -> Any:
    """A stand-in with the attributes of aio_pika's IncomingMessage that the row reads."""
    base = dict.fromkeys(
        (
            "content_encoding",
            "priority",
            "correlation_id",
            "reply_to",
            "expiration",
            "user_id",
            "app_id",
        )
    )
    base.update(
        message_id=str(uuid.uuid4()),
        type="answer.created",
        content_type="application/json",
        delivery_mode=2,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        routing_key="feed.dead",
    )
    base.update(props)
    return SimpleNamespace(headers=headers, body=body, **base)


def ours(**extra: Any) -> dict[str, Any]:
    return {
        "x-error-class": "SchemaViolation",
        "x-error-message": "data.grade: too big",
        "x-attempts": 1,
        "x-first-failed-at": "2026-01-02T03:04:05+00:00",
        "x-failed-queue": "feed.events",
        "x-disposition": "permanent",
        "x-dead-letter-id": str(uuid.uuid4()),
        "x-traceback": "Traceback ...",
        "x-original-routing-key": "answer.created",
        **extra,
    }


def test_our_dead_letter_keeps_its_id_as_dedup_key_and_its_reasons() -> None:
    headers = ours(custom=b"\x00\xff", when=datetime(2026, 1, 1, tzinfo=UTC))
    row = letter_row(message(headers, body=b"\xff\xfe not json"), "feed")
    assert row["dedup_key"] == headers["x-dead-letter-id"]
    assert (row["error_class"], row["disposition"], row["attempts"]) == (
        "SchemaViolation",
        "permanent",
        1,
    )
    assert row["routing_key"] == "answer.created"
    assert row["first_failed_at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["body"] == b"\xff\xfe not json"
    assert from_jsonable(row["headers"]) == headers
    assert row["properties"]["timestamp"] == {"$datetime": "2026-01-02T03:04:05+00:00"}


def test_broker_dead_letter_is_delivery_limit_with_a_deterministic_key() -> None:
    death = [
        {
            "reason": "delivery_limit",
            "queue": "feed.events",
            "count": 1,
            "exchange": "qa.events",
            "routing-keys": ["question.created"],
            "time": datetime(2026, 1, 2, tzinfo=UTC),
        }
    ]
    first = letter_row(message({"x-death": death}, message_id="m1"), "feed")
    again = letter_row(message({"x-death": death, "x-delivery-count": 3}, message_id="m1"), "feed")
    other_body = letter_row(message({"x-death": death}, body=b"[]", message_id="m1"), "feed")
    assert first["disposition"] == "delivery-limit"
    assert first["error_class"] == "DeliveryLimitExceeded"
    assert first["failed_queue"] == "feed.events"
    assert first["routing_key"] == "question.created"
    assert first["dedup_key"] == again["dedup_key"] != other_body["dedup_key"]
    assert len(first["dedup_key"]) <= 128


def test_hostile_header_values_become_storable_without_losing_their_bytes() -> None:
    headers = {"nul": "a\x00b", "nan": float("nan"), "x-dead-letter-id": 42}
    row = letter_row(message(headers, message_id="id\x00x"), "feed")
    assert "\x00" not in str(row["headers"]) and "\x00" not in str(row["properties"])
    assert from_jsonable(row["headers"])["nul"] == b"a\x00b"
    assert row["headers"]["nan"] == "nan"
    # An x-dead-letter-id that is not a string cannot be trusted as a key.
    assert row["dedup_key"].startswith("unlabelled:")
    assert row["message_id"] == "id\\x00x"


def test_replay_headers_drop_failure_headers_and_keep_history() -> None:
    earlier = {"dead_letter_id": 1, "error_class": "TimeoutError"}
    stored = jsonable(ours(**{H_HISTORY: [earlier], "tenant": "t1", "x-delivery-count": 4}))
    letter = {
        "id": 7,
        "headers": stored,
        "error_class": "SchemaViolation",
        "error_message": "bad",
        "disposition": "permanent",
        "attempts": 1,
        "failed_queue": "feed.events",
        "first_failed_at": None,
        "dead_lettered_at": datetime(2026, 1, 2, tzinfo=UTC),
        "routing_key": "answer.created",
    }
    out = replay_headers(letter)
    assert not FAILURE_HEADERS & out.keys()
    assert out["tenant"] == "t1"
    assert out[H_REPLAYED_FROM] == 7
    assert out[H_HISTORY][0] == earlier
    assert out[H_HISTORY][1]["dead_letter_id"] == 7
    assert out[H_HISTORY][1]["error_class"] == "SchemaViolation"
    assert out["x-original-routing-key"] == "answer.created"


def test_event_id_is_the_original_uuid_or_a_new_one_with_a_note() -> None:
    original = uuid.uuid4()
    assert event_id_for(str(original)) == (original, None)
    fresh, note = event_id_for("not-a-uuid")
    assert isinstance(fresh, uuid.UUID) and note and "not a UUID" in note


def test_safe_escapes_terminal_control_characters() -> None:
    assert safe("ok\x1b[31mred\x07") == "ok\\x1b[31mred\\x07"
    assert safe("line1\nline2\ttab") == "line1\nline2\ttab"
    assert "\u202e" not in safe("abc\u202edef")
