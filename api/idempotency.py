"""``Idempotency-Key``: a retried POST returns the stored result and creates nothing.

The key row is claimed at the start of the write transaction with
``INSERT ... ON CONFLICT DO NOTHING``, so it commits or rolls back together with the
question/answer and its outbox row. A concurrent request with the same key waits on
the unique index until the first transaction ends, then finds the stored result (or, if
the first rolled back, claims the key itself). Responses are computed before the write
(ids and timestamps are made here, not by the database), so the stored body is known
when the key is claimed.

A stored result is answered only after a commit of the replaying request itself
(:func:`confirm_replicated`): the original write may have been committed on the primary
without its synchronous replication confirmed (it got a 503, ``NotReplicated``), and a
later commit that is confirmed proves it replicated too (WAL is replayed in order).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from outbox.errors import IdempotencyConflict
from outbox.models import IdempotencyKey


@dataclass(frozen=True)
class IdempotentRequest:
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResult:
    status_code: int
    body: dict[str, Any]


KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
# Core statements on the table, built once with bind parameters: a request does not
# rebuild them or their cache keys.
_CLAIM = (
    insert(KEYS)
    .values(
        user_name=bindparam("user_name"),
        key=bindparam("key"),
        request_hash=bindparam("request_hash"),
        status_code=bindparam("status_code"),
        response=bindparam("response", type_=KEYS.c.response.type),
    )
    .on_conflict_do_nothing(index_elements=[KEYS.c.user_name, KEYS.c.key])
    .returning(KEYS.c.key)
)
_STORED = select(KEYS.c.request_hash, KEYS.c.status_code, KEYS.c.response).where(
    KEYS.c.user_name == bindparam("user_name"), KEYS.c.key == bindparam("key")
)


def request_hash(method: str, path: str, body: dict[str, Any]) -> str:
    """Hash of what the request asks for (validated body, so JSON spacing does not matter)."""
    canonical = orjson.dumps(
        {"method": method, "path": path, "body": body}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


async def claim(
    session: AsyncSession,
    user: str,
    request: IdempotentRequest,
    status_code: int,
    body: dict[str, Any],
) -> StoredResult | None:
    """Claim the key in the current transaction. ``None``: claimed, go on and write.

    Otherwise the result stored by an earlier request with the same key and the same
    request; a different request under that key raises :class:`IdempotencyConflict`.
    """
    inserted = await session.execute(
        _CLAIM,
        {
            "user_name": user,
            "key": request.key,
            "request_hash": request.request_hash,
            "status_code": status_code,
            "response": body,
        },
    )
    if inserted.first() is not None:
        return None
    stored = (await session.execute(_STORED, {"user_name": user, "key": request.key})).first()
    if stored is None:
        # Only if the row vanished between the two statements (no expiry exists yet).
        raise RuntimeError("idempotency key conflicted but no stored result was found")
    if stored.request_hash != request.request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request"
        )
    return StoredResult(status_code=int(stored.status_code), body=dict(stored.response))


async def confirm_replicated(session: AsyncSession, user: str) -> None:
    """Give the current transaction something to commit: a throwaway key row, inserted and
    deleted again (the API role may do both), so its COMMIT writes WAL and waits for the
    synchronous standby like a write does (a read-only commit does not wait)."""
    marker = f"qa-replay-check:{uuid.uuid4()}"
    await session.execute(
        insert(IdempotencyKey).values(
            user_name=user, key=marker, request_hash="", status_code=0, response={}
        )
    )
    await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.user_name == user, IdempotencyKey.key == marker)
    )
