"""Bearer tokens: random secrets shown once, stored only as SHA-256 hashes.

A token has a role: ``writer`` tokens authenticate API writes (the author is the token's
user), ``operator`` tokens sign in to the operators' console. Neither works for the other.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "qa_"
ROLES = ("writer", "operator")
WRITER, OPERATOR = ROLES
# A user name becomes an author shown to everyone: a lowercase slug, like subjects.
USER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else ValueError saying what is allowed."""
    if not USER_NAME.fullmatch(name):
        raise ValueError(
            "user names are 1-64 characters: lowercase letters, digits, '.', '_' and '-',"
            " starting and ending with a letter or digit"
        )
    return name
