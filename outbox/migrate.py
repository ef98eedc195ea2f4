"""Create the database if missing and apply Alembic migrations (used by ``qa-ops db upgrade``)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url

from outbox.db import make_engine


def alembic_config(url: str | SecretStr) -> Config:
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    # '%' is ConfigParser interpolation syntax; URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", raw.replace("%", "%%"))
    return config


def ensure_database(url: str | SecretStr) -> bool:
    """Create the database named in ``url`` if it does not exist. Returns True if created."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    sa_url = make_url(raw)
    name = sa_url.database
    if not name:
        raise ValueError("database URL names no database")
    admin = make_engine(
        sa_url.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def upgrade(url: str | SecretStr, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on the database at ``url``."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | SecretStr) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            has_table = conn.scalar(text("SELECT to_regclass('public.alembic_version')"))
            if not has_table:
                return None
            version = conn.scalar(text("SELECT version_num FROM public.alembic_version"))
            return str(version) if version is not None else None
    finally:
        engine.dispose()
