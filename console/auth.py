"""Who may look and who may act.

* Looking (GET pages): a signed-in session cookie, or ``Authorization: Bearer <operator
  token>`` for scripts.
* Acting (every POST): a signed-in session cookie AND the session's CSRF token (form field
  ``csrf`` or header ``X-CSRF-Token``), and no foreign ``Origin``. A bearer token cannot act.

Writer (API) tokens are refused with 403; unknown or revoked tokens with 401.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from console.sessions import (
    COOKIE,
    Operator,
    Session,
    SessionStore,
    csrf_ok,
    operator_token_alive,
    token_role,
)
from console.web import ConsoleError
from outbox.tokens import OPERATOR

audit_log = logging.getLogger("qa.console.audit")

SIGN_IN = ConsoleError(401, "Sign in required", "Sign in with an operator token.")


def _store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


async def check_token(request: Request, token: str) -> Operator:
    """The operator a bearer token stands for; 401 unknown/revoked, 403 not an operator."""
    found = await run_in_threadpool(token_role, request.app.state.engine, token.strip())
    if found is None:
        raise ConsoleError(401, "Not signed in", "Unknown or revoked token.")
    operator, role = found
    if role != OPERATOR:
        raise ConsoleError(
            403,
            "Not an operator token",
            f"This is a {role} token. The console needs one made with"
            " `qa-ops tokens create --user NAME --role operator`.",
        )
    return operator


async def _session(request: Request) -> Session | None:
    store = _store(request)
    sid = request.cookies.get(COOKIE)
    session = store.get(sid)
    if session is None:
        return None
    alive = await run_in_threadpool(
        operator_token_alive, request.app.state.engine, session.operator.token_id
    )
    if not alive:
        store.drop(sid)
        return None
    return session


async def viewer(request: Request) -> Operator:
    """For read-only pages: a session, or a bearer operator token."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        operator = await check_token(request, credentials)
        request.state.operator = operator
        return operator
    session = await _session(request)
    if session is None:
        raise SIGN_IN
    request.state.session = session
    request.state.operator = session.operator
    return session.operator


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def actor(request: Request) -> Operator:
    """For actions: a signed-in session with its CSRF token; never a bearer token."""
    session = await _session(request)
    if session is None:
        raise SIGN_IN
    request.state.session = session
    request.state.operator = session.operator
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or form.get("csrf")
    if not isinstance(sent, str) or not csrf_ok(session, sent) or not _same_origin(request):
        audit_log.warning(
            "refused %s %s by %s: CSRF check failed",
            request.method,
            request.url.path,
            session.operator.name,
        )
        raise ConsoleError(403, "Refused", "The form's CSRF token is missing or wrong.")
    return session.operator


Viewer = Annotated[Operator, Depends(viewer)]
Actor = Annotated[Operator, Depends(actor)]
