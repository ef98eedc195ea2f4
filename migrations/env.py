"""Alembic environment: URL from ``QA_DATABASE_URL`` unless the caller set one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import outbox.notifier_models  # noqa: F401  (registers the notifier tables)
from outbox.models import Base
from outbox.settings import Settings

SCHEMAS = {"qa", "feed", "notifier", "subscribers"}

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in SCHEMAS
    return True


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or Settings().database_url.get_secret_value()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_schemas=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_schemas=True,
            include_name=_include_name,
            version_table_schema="public",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
