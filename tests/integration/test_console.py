"""The operators' console in-process (Starlette's test client) on the session database."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, text, update

from console.app import create_app
from outbox.db import make_engine
from outbox.models import ApiToken, DeadLetter, DeadLetterAudit, OutboxRow
from outbox.settings import Settings
from tests.support.console_data import make_token, question_letter

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8081") as c:
        yield c


def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = client.get("/login")
    login_csrf = CSRF.search(form.text)
    assert login_csrf
    response = client.post("/login", data={"token": token, "csrf": login_csrf.group(1)})
    assert response.status_code == 200, response.text  # followed the 303 to the overview
    found = CSRF.search(response.text)
    assert found
    return found.group(1)


def operator(db: Engine) -> tuple[str, int, str]:
    name = f"op-{uuid.uuid4().hex[:6]}"
    token_id, token = make_token(db, name, "operator")
    return name, token_id, token


def test_pages_need_a_signed_in_operator(client: TestClient) -> None:
    for path in ("/", "/dead-letters", f"/events/{uuid.uuid4()}", "/dead-letters/1"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "Sign in" in response.text


def test_bearer_operator_token_reads_pages_and_writer_token_is_refused(
    client: TestClient, db: Engine
) -> None:
    _, _, op_token = operator(db)
    _, writer = make_token(db, f"w-{uuid.uuid4().hex[:6]}")
    ok = client.get("/", headers={"Authorization": f"Bearer {op_token}"})
    assert ok.status_code == 200 and 'id="backlog"' in ok.text
    refused = client.get("/", headers={"Authorization": f"Bearer {writer}"})
    assert refused.status_code == 403 and "writer token" in refused.text
    unknown = client.get("/", headers={"Authorization": "Bearer qa_nope"})
    assert unknown.status_code == 401


def test_sign_in_sets_a_strict_httponly_cookie_and_writer_tokens_cannot_sign_in(
    client: TestClient, db: Engine
) -> None:
    _, writer = make_token(db, f"w-{uuid.uuid4().hex[:6]}")
    form = client.get("/login")
    csrf = CSRF.search(form.text)
    assert csrf
    refused = client.post("/login", data={"token": writer, "csrf": csrf.group(1)})
    assert refused.status_code == 403
    name, _, token = operator(db)
    response = client.post(
        "/login", data={"token": token, "csrf": csrf.group(1)}, follow_redirects=False
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert name in client.get("/").text


def test_sign_in_without_the_form_token_is_refused(client: TestClient, db: Engine) -> None:
    _, _, token = operator(db)
    response = client.post("/login", data={"token": token, "csrf": "forged"})
    assert response.status_code == 403


def test_actions_need_csrf_and_post_and_a_session(client: TestClient, db: Engine) -> None:
    letter, _ = question_letter(db, f"csrf-{uuid.uuid4().hex[:8]}")
    _, _, token = operator(db)
    form = {"action": "replay", "id": str(letter), "confirm": "yes"}
    # A bearer token can read but never act.
    bearer = client.post(
        "/dead-letters/apply", data=form, headers={"Authorization": f"Bearer {token}"}
    )
    assert bearer.status_code == 401
    csrf = sign_in(client, token)
    assert client.post("/dead-letters/apply", data=form).status_code == 403
    wrong = client.post("/dead-letters/apply", data={**form, "csrf": csrf + "x"})
    assert wrong.status_code == 403
    foreign = client.post(
        "/dead-letters/apply",
        data={**form, "csrf": csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    assert client.get("/dead-letters/apply").status_code == 405
    with db.connect() as conn:
        status = conn.scalar(select(DeadLetter.status).where(DeadLetter.id == letter))
    assert status == "dead"


def test_group_preview_then_confirm_replays_with_the_operator_as_actor(
    client: TestClient, db: Engine
) -> None:
    func = f"apply_{uuid.uuid4().hex[:8]}"
    letters = [question_letter(db, f"grp-{uuid.uuid4().hex[:8]}", func=func)[0] for _ in range(3)]
    name, _, token = operator(db)
    csrf = sign_in(client, token)
    groups = client.get("/dead-letters").text
    assert f"consumers/feed.py:{func}" in groups
    group = {
        "group_subscriber": "feed",
        "group_error_class": "OperationalError",
        "group_frame": f"consumers/feed.py:{func}",
    }
    preview = client.post("/dead-letters/preview", data={**group, "action": "replay", "csrf": csrf})
    assert preview.status_code == 200
    assert preview.text.count("would replay to queue feed.events") == 3
    with db.connect() as conn:
        assert (
            conn.scalar(select(OutboxRow.id).where(OutboxRow.aggregate_id == str(letters[0])))
            is None
        )
    data = {"action": "replay", "confirm": "yes", "csrf": csrf, "id": [str(i) for i in letters]}
    done = client.post("/dead-letters/apply", data=data)
    assert done.status_code == 200 and "3 of 3 ok" in done.text
    with db.connect() as conn:
        audit = conn.execute(
            select(DeadLetterAudit.actor, DeadLetterAudit.action).where(
                DeadLetterAudit.dead_letter_id.in_(letters)
            )
        ).all()
        rows = conn.scalars(
            select(OutboxRow.routing_key).where(OutboxRow.aggregate_id.in_(map(str, letters)))
        ).all()
    assert sorted(audit) == [(name, "replay")] * 3
    assert rows == ["feed.events"] * 3
    left = client.get(
        "/dead-letters/group",
        params={
            "subscriber": "feed",
            "error_class": "OperationalError",
            "frame": group["group_frame"],
        },
    )
    assert 'id="group-empty"' in left.text


def test_discard_needs_a_reason_and_is_audited(client: TestClient, db: Engine) -> None:
    letter, _ = question_letter(db, f"dis-{uuid.uuid4().hex[:8]}")
    name, _, token = operator(db)
    csrf = sign_in(client, token)
    base = {"action": "discard", "id": str(letter), "csrf": csrf, "confirm": "yes"}
    assert client.post("/dead-letters/apply", data=base).status_code == 422
    done = client.post("/dead-letters/apply", data={**base, "reason": "test data"})
    assert "1 of 1 ok" in done.text
    with db.connect() as conn:
        row = conn.execute(
            select(DeadLetterAudit.actor, DeadLetterAudit.reason).where(
                DeadLetterAudit.dead_letter_id == letter
            )
        ).one()
    assert tuple(row) == (name, "test data")


def test_revoking_the_token_ends_the_session(client: TestClient, db: Engine) -> None:
    _, token_id, token = operator(db)
    sign_in(client, token)
    assert client.get("/dead-letters").status_code == 200
    with db.begin() as conn:
        conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=func.now()))
    assert client.get("/dead-letters").status_code == 401


def test_letter_page_shows_pretty_body_headers_and_traceback(
    client: TestClient, db: Engine
) -> None:
    letter, event_id = question_letter(db, f"show-{uuid.uuid4().hex[:8]}")
    _, _, token = operator(db)
    page = client.get(f"/dead-letters/{letter}", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert f"  &#34;id&#34;: &#34;{event_id}&#34;" in page.text  # indented JSON, escaped
    assert "x-failed-queue" in page.text and "shutting down" in page.text
    assert (
        client.get(
            "/dead-letters/999999999", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )


def test_event_lookup_shows_outbox_and_dead_letter_facts(client: TestClient, db: Engine) -> None:
    letter, event_id = question_letter(db, f"ev-{uuid.uuid4().hex[:8]}")
    _, _, token = operator(db)
    auth = {"Authorization": f"Bearer {token}"}
    page = client.get(f"/events/{event_id}", headers=auth)
    assert page.status_code == 200
    assert f'href="/dead-letters/{letter}"' in page.text
    assert "dead-lettered" in page.text
    unknown = client.get(f"/events/{uuid.uuid4()}", headers=auth)
    assert unknown.status_code == 200 and 'id="not-found"' in unknown.text
    assert client.get("/events/not-a-uuid", headers=auth).status_code == 404


def test_hostile_letter_content_is_escaped(client: TestClient, db: Engine) -> None:
    letter, _ = question_letter(db, f"xss-{uuid.uuid4().hex[:8]}", error_class="<script>x</script>")
    _, _, token = operator(db)
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/dead-letters", f"/dead-letters/{letter}"):
        text = client.get(path, headers=auth).text
        assert "<script>x</script>" not in text and "&lt;script&gt;" in text


def test_overview_names_the_relay_leader_per_shard(settings: Settings, db: Engine) -> None:
    key = random.randrange(2**40, 2**50) * 2
    sharded = settings.model_copy(update={"relay_lock_key": key, "relay_shards": 2})
    _, _, token = operator(db)
    auth = {"Authorization": f"Bearer {token}"}
    name = f"test-relay-{uuid.uuid4().hex[:6]}"
    with TestClient(create_app(sharded)) as client:
        assert "none: no relay holds the leader lock" in client.get("/", headers=auth).text
        holder = make_engine(settings.database_url, connect_args={"application_name": name})
        try:
            with holder.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key + 2})  # shard 1
                page = client.get("/overview/live", headers=auth).text
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key + 2})
        finally:
            holder.dispose()
    assert f"shard 1: {name}" in page
    assert "1 of 2 shards led" in page and "1 shard(s) without a relay" in page


def test_database_down_is_a_503_page_not_a_traceback(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": SecretStr("postgresql+psycopg://postgres@127.0.0.1:1/qa")}
    )
    with TestClient(create_app(down)) as client:
        response = client.get("/dead-letters", headers={"Authorization": "Bearer qa_x"})
    assert response.status_code == 503
    assert "Database unavailable" in response.text and "Traceback" not in response.text
