"""Dead-letter pages: groups, one group's letters, one letter, and replay/discard.

Actions run in two steps, like the CLI's ``--dry-run`` then ``--yes``: *preview* shows what
each letter would get (``outbox.deadletters.preview``) and a confirmation form carrying
exactly those ids; *apply* runs the same audited store functions as ``qa-ops dlq`` with the
signed-in operator as the actor. A group is resolved to ids at preview time, so letters
that arrive between preview and confirmation are not touched unseen.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from console.auth import Actor, Viewer, audit_log
from console.web import ConsoleError, page
from outbox import deadletters as store
from outbox.deadletter_groups import GroupKey, find_group, groups, project_frame
from outbox.topology import H_TRACEBACK

router = APIRouter()
MAX_IDS = 10_000
ACTIONS = ("replay", "discard")


def _groups(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return groups(conn)


@router.get("/dead-letters", response_class=HTMLResponse)
async def list_groups(request: Request, operator: Viewer) -> Response:
    found = await run_in_threadpool(_groups, request.app.state.engine)
    return page(request, "dead_letters.html", groups=found)


def _group_letters(engine: Engine, key: GroupKey) -> tuple[Any, list[dict[str, Any]]]:
    with engine.connect() as conn:
        group = find_group(conn, key)
        if group is None:
            return None, []
        rows = store.list_letters(conn, store.Filters(status="dead"))
    members = set(group.ids)
    return group, [r for r in rows if r["id"] in members]


@router.get("/dead-letters/group", response_class=HTMLResponse)
async def show_group(
    request: Request, operator: Viewer, subscriber: str, error_class: str, frame: str
) -> Response:
    key = GroupKey(subscriber, error_class, frame)
    group, letters = await run_in_threadpool(_group_letters, request.app.state.engine, key)
    return page(request, "group.html", key=key, group=group, letters=letters)


def _letter(engine: Engine, letter_id: int) -> tuple[Any, list[dict[str, Any]]]:
    with engine.connect() as conn:
        letter = store.get_letter(conn, letter_id)
        history = store.audit_history(conn, letter_id) if letter else []
    return letter, history


def _body(body: bytes) -> tuple[str, str]:
    """(how it is shown, the text): pretty JSON, plain text, or escaped bytes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes (not UTF-8)", body.decode("utf-8", "backslashreplace")
    try:
        return "JSON", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return "text (not JSON)", text


@router.get("/dead-letters/{letter_id:int}", response_class=HTMLResponse)
async def show_letter(request: Request, operator: Viewer, letter_id: int) -> Response:
    letter, history = await run_in_threadpool(_letter, request.app.state.engine, letter_id)
    if letter is None:
        raise ConsoleError(404, "Not found", f"There is no dead letter {letter_id}.")
    kind, body = _body(letter["body"])
    headers = dict(letter["headers"] or {})
    if isinstance(headers.get(H_TRACEBACK), str):
        headers[H_TRACEBACK] = f"({len(headers[H_TRACEBACK])} characters: Traceback below)"
    return page(
        request,
        "letter.html",
        letter=letter,
        headers=headers,
        history=history,
        body_kind=kind,
        body=body,
        frame=project_frame(letter["traceback"]),
    )


async def _ids(request: Request) -> list[int]:
    """The letters a form names: ``id`` fields, or a whole group (resolved now)."""
    form = await request.form()
    raw = form.getlist("id")
    if raw:
        try:
            ids = sorted({int(str(v)) for v in raw})
        except ValueError as exc:
            raise ConsoleError(422, "Bad request", "Dead letter ids are integers.") from exc
    elif form.get("group_subscriber") is not None:
        key = GroupKey(
            str(form.get("group_subscriber")),
            str(form.get("group_error_class", "")),
            str(form.get("group_frame", "")),
        )
        group, _ = await run_in_threadpool(_group_letters, request.app.state.engine, key)
        ids = group.ids if group is not None else []
    else:
        raise ConsoleError(422, "Nothing selected", "Select dead letters or a group first.")
    if len(ids) > MAX_IDS:
        raise ConsoleError(422, "Too many", f"At most {MAX_IDS} dead letters per action.")
    return ids


async def _action(request: Request) -> tuple[str, str]:
    form = await request.form()
    action = str(form.get("action", ""))
    if action not in ACTIONS:
        raise ConsoleError(422, "Bad request", "The action is replay or discard.")
    reason = str(form.get("reason", "")).strip()
    if action == "discard" and not reason:
        raise ConsoleError(422, "A reason is required", "Say why these letters are discarded.")
    return action, reason


def _preview(engine: Engine, action: str, ids: list[int]) -> list[store.ActionResult]:
    with engine.connect() as conn:
        if action == "replay":
            return [store.preview(conn, i) for i in ids]
        results = []
        for i in ids:
            letter = store.get_letter(conn, i)
            if letter is None:
                results.append(store.ActionResult(i, "not found", ok=False))
            elif letter["status"] != "dead":
                status = letter["status"]
                results.append(store.ActionResult(i, f"already {status}", status == "discarded"))
            else:
                results.append(store.ActionResult(i, "would discard", ok=True))
        return results


@router.post("/dead-letters/preview", response_class=HTMLResponse)
async def preview(request: Request, operator: Actor) -> Response:
    action, reason = await _action(request)
    ids = await _ids(request)
    results = await run_in_threadpool(_preview, request.app.state.engine, action, ids)
    return page(request, "preview.html", action=action, reason=reason, results=results, ids=ids)


def _apply(engine: Engine, action: str, ids: list[int], actor: str, reason: str) -> list[Any]:
    if action == "replay":
        return [store.replay(engine, i, actor) for i in ids]
    return [store.discard(engine, i, actor, reason) for i in ids]


@router.post("/dead-letters/apply", response_class=HTMLResponse)
async def apply(request: Request, operator: Actor) -> Response:
    action, reason = await _action(request)
    form = await request.form()
    if form.get("confirm") != "yes":
        raise ConsoleError(422, "Not confirmed", "Confirm the action on the preview page.")
    ids = await _ids(request)
    results = await run_in_threadpool(
        _apply, request.app.state.engine, action, ids, operator.name, reason
    )
    done = sum(r.ok for r in results)
    audit_log.info("%s: %s of %d dead letter(s) by %s ok", action, done, len(ids), operator.name)
    return page(request, "applied.html", action=action, results=results, done=done)
