"""The one event envelope every process speaks, and the registry of event schemas.

The relay never decodes envelopes: it moves the bytes written here. Consumers decode
through :func:`decode`, which raises a :class:`PermanentMessageError` subclass for
anything that can never be applied.

Readers are tolerant: fields they do not know are ignored (an additive change keeps the
version, see README "Event versioning"); fields they know are validated strictly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from outbox.errors import SchemaViolation, UndecodableBody, UnknownEventType

# Strings must be storable in PostgreSQL (no NUL) and valid Unicode (pydantic-core refuses
# lone surrogates on its own). Checked in pydantic-core, not a Python callback: this runs
# for every string of every event the consumer decodes.
NO_NUL = r"^[^\x00]*$"
CleanStr = Annotated[str, StringConstraints(pattern=NO_NUL)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=40)]
Grade = Annotated[int, Field(ge=1, le=12)]
# A user name as ``qa-ops users`` accepts it: the same name a token acts as.
UserName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)]
# ASCII addresses only (no SMTPUTF8): local@domain, the domain with at least one dot.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]


class _Strict(BaseModel):
    # "ignore", not "forbid": a producer may add an optional field without a new version
    # and a subscriber deployed earlier must keep working (tolerant reader). Attribute
    # docstrings become the field descriptions of the published JSON Schemas (AsyncAPI).
    model_config = ConfigDict(extra="ignore", frozen=True, use_attribute_docstrings=True)


Title = Annotated[CleanStr, StringConstraints(min_length=1, max_length=200)]
# Authors are token user names (any clean text), not necessarily qa.users slugs.
AuthorName = Annotated[CleanStr, StringConstraints(min_length=1, max_length=64)]
EditableField = Literal["title", "body", "subject", "grade"]


class QuestionCreatedV1(_Strict):
    """A question was asked. Its body is not carried (see README "What events leave out")."""

    question_id: uuid.UUID
    title: Title
    subject: Slug
    """Lowercase slug, e.g. `physics`, `world-history`."""
    grade: Grade
    """School grade, 1-12."""
    author: AuthorName
    """User name of the asker (the API token's user)."""
    created_at: AwareDatetime


class QuestionEditedV1(_Strict):
    """The author edited a question: which fields changed, and the question's state after
    the edit (title, subject and grade in full, whatever changed). Keep it if the
    envelope's `sequence` is higher than the one your copy came from."""

    question_id: uuid.UUID
    changed: Annotated[list[EditableField], Field(min_length=1, max_length=4)]
    """The fields this edit changed (`body` too, whose text is not carried)."""
    title: Title
    """Title after the edit."""
    subject: Slug
    """Subject after the edit."""
    grade: Grade
    """Grade after the edit."""
    edited_at: AwareDatetime


class AnswerCreatedV1(_Strict):
    """An answer was posted (version 1: ids only; superseded by version 2)."""

    answer_id: uuid.UUID
    question_id: uuid.UUID
    author: AuthorName
    """User name of the answerer."""
    created_at: AwareDatetime


class QuestionState(_Strict):
    """The question as it was when the event was written (at the envelope's `sequence`)."""

    id: uuid.UUID
    title: Title
    subject: Slug
    grade: Grade


class AnswerCreatedV2(_Strict):
    """An answer was posted, with the state of its question (event-carried state).
    Breaking change from version 1: `question_id` moved into `question.id`."""

    answer_id: uuid.UUID
    question: QuestionState
    author: AuthorName
    """User name of the answerer."""
    created_at: AwareDatetime


class UserStateV1(_Strict):
    """The whole state of a user after a change: a subscriber keeps the highest ``revision``,
    so the order in which user events arrive does not matter.

    Carries the e-mail address: see README "Email notifier" > "Personal data" for where it travels.
    """

    name: UserName
    email: Email | None
    opted_out: bool
    revision: Annotated[int, Field(ge=1)]
    changed_at: AwareDatetime


class UserRegisteredV1(UserStateV1):
    """``user.registered``: ``qa-ops users create``."""


class UserUpdatedV1(UserStateV1):
    """``user.updated``: ``qa-ops users set-email`` / ``opt-out`` / ``opt-in``."""


EVENT_SCHEMAS: dict[tuple[str, int], type[BaseModel]] = {
    ("question.created", 1): QuestionCreatedV1,
    ("question.edited", 1): QuestionEditedV1,
    ("answer.created", 1): AnswerCreatedV1,
    ("answer.created", 2): AnswerCreatedV2,
    ("user.registered", 1): UserRegisteredV1,
    ("user.updated", 1): UserUpdatedV1,
}
"""Every (type, version) that exists. Producers emit the newest version of each type."""


class Envelope(_Strict):
    """`{id, type, version, occurred_at, aggregate_type, aggregate_id, sequence, data}`."""

    id: uuid.UUID
    """Event id, fixed when the event is written; also the AMQP message_id. Deduplicate by it."""
    type: Annotated[CleanStr, StringConstraints(min_length=1, max_length=100)]
    """Event type; also the routing key and the AMQP type."""
    version: Annotated[int, Field(ge=1, le=1000)]
    """Version of `data`'s schema for this type."""
    occurred_at: AwareDatetime
    """When the event was written."""
    aggregate_type: Annotated[CleanStr, StringConstraints(min_length=1, max_length=50)]
    """`question` for every event today."""
    aggregate_id: Annotated[CleanStr, StringConstraints(min_length=1, max_length=100)]
    """The question's id."""
    sequence: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    """Number of this event among its aggregate's events (1, 2, 3, ... in commit order),
    assigned when it is written. Keep the state of the highest. `null` on events written
    before sequences existed."""
    data: dict[str, Any]
    """The event's payload, per type and version."""

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def new_envelope(
    event_type: str,
    aggregate_type: str,
    aggregate_id: object,
    data: BaseModel,
    version: int = 1,
    *,
    sequence: int | None = None,
) -> Envelope:
    """Build an envelope with a fresh id; the id is kept end to end."""
    if EVENT_SCHEMAS.get((event_type, version)) is not type(data):
        raise ValueError(f"{type(data).__name__} is not the schema of {event_type} v{version}")
    return Envelope(
        id=uuid.uuid4(),
        type=event_type,
        version=version,
        occurred_at=datetime.now(UTC),
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        sequence=sequence,
        data=data.model_dump(mode="json"),
    )


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A validated envelope and its validated ``data`` (built only by :func:`decode`)."""

    envelope: Envelope
    data: BaseModel


def decode(body: bytes) -> DecodedEvent:
    """Decode and validate a message body. Raises a ``PermanentMessageError`` subclass."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableBody(f"body is not UTF-8: {exc}") from exc
    try:
        # One pass in pydantic-core: JSON parsing and envelope validation together.
        envelope = Envelope.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise UndecodableBody(f"body is not JSON: {first['msg']}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise SchemaViolation("envelope must be a JSON object") from exc
        raise SchemaViolation(_summary("envelope", exc)) from exc
    schema = EVENT_SCHEMAS.get((envelope.type, envelope.version))
    if schema is None:
        raise UnknownEventType(f"no schema for {envelope.type!r} version {envelope.version}")
    try:
        data = schema.model_validate(envelope.data)
    except ValidationError as exc:
        raise SchemaViolation(_summary(f"{envelope.type} v{envelope.version} data", exc)) from exc
    return DecodedEvent(envelope, data)


def _summary(what: str, exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]]
    return f"{what} invalid: " + "; ".join(parts)
