"""Engine construction. Nothing connects at import time: entrypoints call these at start-up."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def _url(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def make_engine(url: str | SecretStr, **kwargs: Any) -> Engine:
    return create_engine(_url(url), pool_pre_ping=True, **kwargs)


def make_async_engine(
    url: str | SecretStr,
    *,
    application_name: str,
    options: str = "",
    pre_ping: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine whose connections name themselves in ``pg_stat_activity``.

    ``pre_ping=False`` saves a round trip per checkout; a connection found dead is then
    reported by the statement that uses it (SQLAlchemy invalidates the pool on disconnect).
    """
    connect_args: dict[str, Any] = {"application_name": application_name, "connect_timeout": 5}
    if options:
        connect_args["options"] = options
    return create_async_engine(
        _url(url), pool_pre_ping=pre_ping, connect_args=connect_args, **kwargs
    )


def libpq_dsn(url: str | SecretStr) -> str:
    """The SQLAlchemy URL as a libpq conninfo string, for raw psycopg connections (LISTEN).

    Built by SQLAlchemy's own psycopg dialect, so the multi-host form
    (``postgresql+psycopg://u@/db?host=a:5432&host=b:5432&target_session_attrs=read-write``)
    becomes ``host=a,b port=5432,5432 ...`` exactly as the engines see it.
    """
    dialect = psycopg_dialect()  # type: ignore[no-untyped-call]
    _, params = dialect.create_connect_args(make_url(_url(url)))  # type: ignore[no-untyped-call]
    return make_conninfo("", **{k: v for k, v in params.items() if isinstance(v, str | int)})


def database_name(url: str | SecretStr) -> str:
    name = make_url(_url(url)).database
    if not name:
        raise ValueError("database URL names no database")
    return name
