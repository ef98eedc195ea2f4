"""Sign in with an operator token, sign out. Both are POSTs with a CSRF token."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.auth import Actor, audit_log, check_token
from console.sessions import COOKIE, SessionStore
from console.web import ConsoleError, page

router = APIRouter()
LOGIN_COOKIE = "qa_console_login"


def _cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", path="/")


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    # Double-submit token for the sign-in form (there is no session yet to hold one).
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = page(request, "login.html", login_csrf=token)
    _cookie(response, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.post("/login")
async def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise ConsoleError(403, "Refused", "The sign-in form expired; reload it and try again.")
    try:
        operator = await check_token(request, token)
    except ConsoleError as exc:
        audit_log.warning("sign-in refused (%s)", exc.title)
        raise
    store: SessionStore = request.app.state.sessions
    sid, _ = store.create(operator)
    audit_log.info("%s signed in (token %d)", operator.name, operator.token_id)
    response = RedirectResponse("/", status_code=303)
    _cookie(response, COOKIE, sid, max_age=None)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, operator: Actor) -> Response:
    store: SessionStore = request.app.state.sessions
    store.drop(request.cookies.get(COOKIE))
    audit_log.info("%s signed out", operator.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
