"""Signed-in operators: server-side sessions keyed by a random cookie value.

A session remembers which operator token signed in; every request re-checks that the
token is still an unrevoked operator token, so ``qa-ops tokens revoke`` ends the session
at once. Each session has its own CSRF token, required on every action (POST). Sessions
live in the console process: restarting the console signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select

from outbox.models import ApiToken
from outbox.tokens import OPERATOR, hash_token

COOKIE = "qa_console_session"
_MAX_TOKEN_CHARS = 256


@dataclass(frozen=True)
class Operator:
    name: str
    token_id: int


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf: str
    expires: float


def token_role(engine: Engine, token: str) -> tuple[Operator, str] | None:
    """(operator, role) of an unrevoked token, or None when it is unknown or revoked."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(ApiToken.id, ApiToken.user_name, ApiToken.role).where(
                ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
            )
        ).one_or_none()
    if row is None:
        return None
    return Operator(row.user_name, row.id), row.role


def operator_token_alive(engine: Engine, token_id: int) -> bool:
    with engine.connect() as conn:
        found = conn.scalar(
            select(ApiToken.id).where(
                ApiToken.id == token_id,
                ApiToken.revoked_at.is_(None),
                ApiToken.role == OPERATOR,
            )
        )
    return found is not None


class SessionStore:
    """In-memory sessions with an absolute lifetime."""

    def __init__(self, lifetime_seconds: float) -> None:
        self._lifetime = lifetime_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, operator: Operator) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), time.monotonic() + self._lifetime)
        with self._lock:
            self._expire()
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[sid]
                return None
        return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())
