"""Request and response bodies of the HTTP API (separate from the database models).

Inputs forbid unknown fields and reuse the event schemas' string types, so anything the
API accepts (no NUL bytes, no lone surrogates, lowercase slugs) is also a valid event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from outbox.events import CleanStr, Grade, Slug

Title = Annotated[CleanStr, StringConstraints(min_length=1, max_length=200)]
Body = Annotated[CleanStr, StringConstraints(min_length=1, max_length=20_000)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuestionIn(_Input):
    """``POST /questions``. The author is the token's user, never a field."""

    title: Title
    body: Body
    subject: Slug
    grade: Grade


def _patch_schema(schema: dict[str, Any]) -> None:
    """Document what is accepted: each field optional but never null, at least one."""
    for prop in schema.get("properties", {}).values():
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop.update(options[0])
        prop.pop("default", None)
    schema["minProperties"] = 1


class QuestionPatch(_Input):
    """``PATCH /questions/{id}``: the fields to change (at least one); absent ones stay."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_patch_schema)

    title: Title | None = None
    body: Body | None = None
    subject: Slug | None = None
    grade: Grade | None = None

    @model_validator(mode="after")
    def _some_fields_none_null(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, body, subject, grade")
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return self

    def changes(self) -> dict[str, object]:
        """The fields the client sent, by name."""
        return self.model_dump(exclude_unset=True)


class AnswerIn(_Input):
    """``POST /questions/{id}/answers``."""

    body: Body


class AnswerOut(BaseModel):
    id: uuid.UUID
    question_id: uuid.UUID
    body: str
    author: str
    created_at: datetime


class QuestionOut(BaseModel):
    id: uuid.UUID
    title: str
    body: str
    subject: str
    grade: int
    author: str
    created_at: datetime


class QuestionWithAnswers(QuestionOut):
    """``GET /questions/{id}``: the question and one page of its answers, oldest first.
    Pass ``next_cursor`` back as ``cursor`` for the next page of answers."""

    answers: list[AnswerOut]
    next_cursor: str | None = None


class FeedItem(BaseModel):
    question_id: uuid.UUID
    title: str
    subject: str
    grade: int
    answered: bool
    answer_count: int
    created_at: datetime
    last_answer_at: datetime | None


class FeedPage(BaseModel):
    """One page of the feed; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[FeedItem]
    next_cursor: str | None


class ErrorOut(BaseModel):
    """Body of 500/503 responses: a generic message and the request id, nothing else."""

    detail: str
    request_id: str
