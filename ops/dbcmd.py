"""``qa-ops db``: schema management."""

from __future__ import annotations

import typer

from ops.common import console
from outbox import subscribers
from outbox.settings import Settings, redact

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Create the database(s) if missing and apply Alembic migrations."""
    # Imported here: alembic costs ~1 s of start-up that other qa-ops commands need not pay.
    from outbox.migrate import ensure_database
    from outbox.migrate import upgrade as alembic_upgrade

    settings = Settings()
    # The main database, and every subscriber's own database where it has one.
    urls = {settings.database_url.get_secret_value(): settings.database_url}
    urls.setdefault(settings.feed_url.get_secret_value(), settings.feed_url)
    for subscriber in subscribers.discover().values():
        url = subscriber.database_url(settings)
        urls.setdefault(url.get_secret_value(), url)
    for url in urls.values():
        if ensure_database(url):
            console.print(f"created database {redact(url)}")
        alembic_upgrade(url, revision)
        console.print(f"migrated {redact(url)} to {revision}")
