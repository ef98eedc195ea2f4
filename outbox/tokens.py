"""Bearer tokens: random secrets shown once, stored only as SHA-256 hashes.

A token has a role: ``writer`` tokens authenticate API writes (the author is the token's
user), ``operator`` tokens sign in to the operators' console. Neither works for the other.
"""

from __future__ import annotations

import hashlib
import secrets

from pydantic import TypeAdapter, ValidationError

from outbox.events import UserName

TOKEN_PREFIX = "qa_"
ROLES = ("writer", "operator")
WRITER, OPERATOR = ROLES
# A user name becomes an author shown to everyone: the slug ``qa-ops users`` accepts.
_USER_NAME = TypeAdapter(UserName)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else ValueError saying what is allowed."""
    try:
        return _USER_NAME.validate_python(name)
    except ValidationError:
        raise ValueError(
            "user names are slugs of at most 64 characters: lowercase letters and digits,"
            " words joined by single '-'"
        ) from None
