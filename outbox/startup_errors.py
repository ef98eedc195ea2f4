"""Which start-up failures are worth retrying, in words an operator understands.

Transient: the server is not up yet, restarting, unreachable, timing out. Permanent: it
answered and said no (the database or role does not exist, the password is wrong, the
virtual host does not exist or the user may not use it). Retrying a permanent failure
only delays the real reason until the start-up budget runs out, so it ends the start at
once.
"""

from __future__ import annotations

import re

import aiormq.exceptions
import psycopg
from sqlalchemy import exc as sa_exc

# libpq reports server-side refusals as "FATAL:  <message>".
_PG_PERMANENT = re.compile(
    r"FATAL:\s+(?P<reason>(?:database|role) \"[^\"]*\" does not exist"
    r"|password authentication failed[^\n]*"
    r"|no pg_hba\.conf entry[^\n]*"
    r"|permission denied for database[^\n]*)"
)


def _root(exc: BaseException) -> BaseException:
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def permanent_reason(exc: BaseException) -> str | None:
    """The reason when ``exc`` will not go away by retrying, else None."""
    exc = _root(exc)
    if isinstance(exc, psycopg.OperationalError):
        match = _PG_PERMANENT.search(str(exc))
        return match.group("reason") if match else None
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return "access refused: wrong user name or password"
    if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
        # The broker answered Connection.Open with Connection.Close: 530 NOT_ALLOWED
        # (aiormq drops the reply text; the broker log has it).
        return "the broker refused the virtual host: it does not exist or the user may not use it"
    return None


def describe(exc: BaseException) -> str:
    """One short line for a log: the exception type and its first line."""
    exc = _root(exc)
    text = str(exc).strip()
    if isinstance(exc, psycopg.OperationalError):
        # "connection failed: connection to server at ... failed: Connection refused"
        text = text.split(" failed: ")[-1]
    first = (text.splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__
