"""Users and their e-mail addresses: each change writes the user row and its ``user.*``
event in one transaction (the caller's), so a subscriber never misses a change.

Every event carries the user's whole state and a ``revision`` that grows by one per
change, so a subscriber keeps the newest state whatever order events arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from outbox.errors import NotFound, QAError
from outbox.events import Email, UserName, UserRegisteredV1, UserUpdatedV1, new_envelope
from outbox.models import User
from outbox.uow import outbox_insert

_NAME = TypeAdapter(UserName)
_EMAIL = TypeAdapter(Email)


class InvalidUserInput(QAError):
    """A user name or address that the service does not accept."""


class UserExists(QAError):
    """``users create`` for a name that already has a row."""


@dataclass(frozen=True)
class UserState:
    name: str
    email: str | None
    opted_out: bool
    revision: int
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "opted_out": self.opted_out,
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def valid_name(name: str) -> str:
    try:
        return _NAME.validate_python(name)
    except ValidationError:
        raise InvalidUserInput(
            f"user name {name!r} must be a slug: lowercase letters, digits and single "
            "hyphens, at most 64 characters"
        ) from None


def valid_email(address: str) -> str:
    """The address with its domain lowercased; ASCII addresses only."""
    try:
        checked = _EMAIL.validate_python(address.strip())
    except ValidationError:
        raise InvalidUserInput(f"not an e-mail address: {address!r}") from None
    local, _, domain = checked.rpartition("@")
    return f"{local}@{domain.lower()}"


_COLUMNS = (User.name, User.email, User.opted_out, User.revision, User.created_at, User.updated_at)


def _emit(conn: Connection, event_type: str, state: UserState) -> None:
    schema = UserRegisteredV1 if event_type == "user.registered" else UserUpdatedV1
    data = schema(
        name=state.name,
        email=state.email,
        opted_out=state.opted_out,
        revision=state.revision,
        changed_at=state.updated_at,
    )
    # The revision is the user aggregate's sequence: the envelope carries it like every event.
    envelope = new_envelope(event_type, "user", state.name, data, sequence=state.revision)
    conn.execute(outbox_insert(envelope))


def create(conn: Connection, name: str, email: str | None) -> UserState:
    """Insert the user and its ``user.registered`` event. Raises :class:`UserExists`."""
    statement = (
        pg_insert(User)
        .values(name=valid_name(name), email=valid_email(email) if email is not None else None)
        .on_conflict_do_nothing(index_elements=[User.name])
        .returning(*_COLUMNS)
    )
    row = conn.execute(statement).first()
    if row is None:
        raise UserExists(f"user {name!r} already exists")
    state = UserState(*row)
    _emit(conn, "user.registered", state)
    return state


def change(conn: Connection, name: str, **values: Any) -> tuple[UserState, bool]:
    """Set ``values`` (``email``, ``opted_out``) on the user and emit ``user.updated``.

    Returns the state and whether anything changed; an unchanged user emits nothing.
    Raises :class:`NotFound` for an unknown user.
    """
    current = conn.execute(
        select(*_COLUMNS).where(User.name == valid_name(name)).with_for_update()
    ).first()
    if current is None:
        raise NotFound(f"no user {name!r} (create it with 'qa-ops users create')")
    if all(getattr(current, key) == value for key, value in values.items()):
        return UserState(*current), False
    row = conn.execute(
        update(User)
        .where(User.name == current.name)
        .values(**values, revision=User.revision + 1, updated_at=func.clock_timestamp())
        .returning(*_COLUMNS)
    ).one()
    state = UserState(*row)
    _emit(conn, "user.updated", state)
    return state, True


def list_users(conn: Connection) -> list[UserState]:
    return [UserState(*row) for row in conn.execute(select(*_COLUMNS).order_by(User.name))]
