"""``POST /questions``, ``PATCH /questions/{id}``, ``POST /questions/{id}/answers``,
``GET /questions/{id}``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import paging
from api.deps import CurrentUser, IdempotencyKeyHeader, MetricsDep, QaSession, SettingsDep, UoW
from api.edits import edit_question
from api.idempotency import IdempotentRequest, request_hash
from api.paging import page_limit
from api.question_page import DEFAULT_ANSWERS, question_page
from api.schemas import (
    AnswerIn,
    AnswerOut,
    QuestionIn,
    QuestionOut,
    QuestionPatch,
    QuestionWithAnswers,
)
from api.writes import WriteResult, create_answer, create_question

router = APIRouter(tags=["questions"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing, invalid or revoked bearer token"},
    413: {"description": "Request body too large"},
    422: {"description": "Invalid input, or Idempotency-Key reused with another request"},
    503: {"description": "Database unavailable; retry after Retry-After seconds"},
}


def _idempotent(
    key: str | None, path: str, body: Callable[[], dict[str, Any]], method: str = "POST"
) -> IdempotentRequest | None:
    """The request's idempotency identity; ``body`` is only dumped (and hashed) when a
    key was sent, most writes carry none."""
    if key is None:
        return None
    return IdempotentRequest(key=key, request_hash=request_hash(method, path, body()))


def _response(result: WriteResult, location: str | None = None) -> JSONResponse:
    headers = {"Location": location} if location else {}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(result.body, status_code=result.status_code, headers=headers)


@router.post("/questions", status_code=201, response_model=QuestionOut, responses=_ERRORS)
async def post_question(
    data: QuestionIn,
    user: CurrentUser,
    uow: UoW,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Ask a question. Emits ``question.created``."""
    idem = _idempotent(idempotency_key, "/questions", partial(data.model_dump, mode="json"))
    result = await create_question(uow, metrics, user, data, idem)
    return _response(result, f"/questions/{result.body['id']}")


@router.patch(
    "/questions/{question_id}",
    response_model=QuestionOut,
    responses={
        **_ERRORS,
        403: {"description": "Not the question's author"},
        404: {"description": "Unknown question"},
    },
)
async def patch_question(
    question_id: uuid.UUID,
    data: QuestionPatch,
    user: CurrentUser,
    uow: UoW,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Edit your question (fields left out stay). Emits ``question.edited`` when it changes."""
    path = f"/questions/{question_id}"
    idem = _idempotent(idempotency_key, path, data.changes, "PATCH")
    return _response(await edit_question(uow, metrics, user, question_id, data, idem))


@router.post(
    "/questions/{question_id}/answers",
    status_code=201,
    response_model=AnswerOut,
    responses={**_ERRORS, 404: {"description": "Unknown question"}},
)
async def post_answer(
    question_id: uuid.UUID,
    data: AnswerIn,
    user: CurrentUser,
    uow: UoW,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Answer a question. Emits ``answer.created``."""
    path = f"/questions/{question_id}/answers"
    idem = _idempotent(idempotency_key, path, partial(data.model_dump, mode="json"))
    result = await create_answer(uow, metrics, user, question_id, data, idem)
    return _response(result, f"/questions/{question_id}")


@router.get(
    "/questions/{question_id}",
    response_model=QuestionWithAnswers,
    responses={
        404: {"description": "Unknown question"},
        422: {"description": "Invalid limit or cursor"},
    },
)
async def get_question(
    question_id: uuid.UUID,
    session: QaSession,
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, description="answers per page (capped)")] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> QuestionWithAnswers:
    """A question with a page of its answers, oldest first (``next_cursor`` for more)."""
    size = page_limit(limit, DEFAULT_ANSWERS, settings.api_feed_max_limit)
    return await question_page(session, question_id, paging.after(cursor, "answers"), size)
