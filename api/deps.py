"""FastAPI dependencies, as ``Annotated`` aliases routes use as parameter types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.metrics import ApiMetrics
from api.token_cache import TokenCache
from outbox.errors import Unauthorized
from outbox.models import ApiToken
from outbox.settings import Settings
from outbox.tokens import WRITER, hash_token
from outbox.uow import UnitOfWork

_MAX_TOKEN_CHARS = 256


# Dependencies are async (even trivial ones): FastAPI runs sync dependencies in a thread
# pool, a thread hand-off per dependency per request.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def _uow(request: Request) -> UnitOfWork:
    """A fresh, not yet entered unit of work: the route decides where its transaction starts."""
    return UnitOfWork(request.app.state.sessions, request.app.state.settings.relay_shards)


async def _qa_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def _feed_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.feed_sessions() as session:
        yield session


_bearer = HTTPBearer(auto_error=False, description="A token from `qa-ops tokens create`.")


async def _current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The user name of a valid, unrevoked writer token; 401 otherwise (operator tokens
    sign in to the console only)."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("a bearer token is required")
    token = credentials.credentials
    if len(token) > _MAX_TOKEN_CHARS:
        raise Unauthorized("invalid or revoked token")
    digest = hash_token(token)
    cache: TokenCache = request.app.state.token_cache
    user = cache.get(digest)
    if user is None:
        async with request.app.state.sessions() as session:
            user = await session.scalar(
                select(ApiToken.user_name).where(
                    ApiToken.token_hash == digest,
                    ApiToken.revoked_at.is_(None),
                    ApiToken.role == WRITER,
                )
            )
        if user is None:
            raise Unauthorized("invalid or revoked token")
        cache.put(digest, str(user))
    return str(user)


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
UoW = Annotated[UnitOfWork, Depends(_uow)]
QaSession = Annotated[AsyncSession, Depends(_qa_session)]
FeedSession = Annotated[AsyncSession, Depends(_feed_session)]
CurrentUser = Annotated[str, Depends(_current_user)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        # Printable ASCII, no leading or trailing space.
        pattern=r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
        description="Retrying with the same key returns the original result.",
    ),
]
