"""Subscriber runtime: inbox and dead letters of every subscriber in schema ``subscribers``.

``feed.inbox`` becomes ``subscribers.inbox`` (column ``consumer`` renamed ``subscriber``,
index for retention); ``feed.dead_letters`` and ``feed.dead_letter_audit`` move to
``subscribers`` with their rows, ids and audit trail; dead letters get a ``subscriber``
column (existing rows: ``feed``, the only subscriber before). Grants follow for the
per-process roles where they exist (the consumer may now DELETE from the inbox).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANTS = {
    "qa_consumer": [
        "GRANT USAGE ON SCHEMA subscribers TO qa_consumer",
        "GRANT SELECT, INSERT, DELETE ON subscribers.inbox TO qa_consumer",
    ],
    "qa_archiver": [
        "GRANT USAGE ON SCHEMA subscribers TO qa_archiver",
        "GRANT SELECT, INSERT ON subscribers.dead_letters TO qa_archiver",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA subscribers TO qa_archiver",
    ],
    "qa_ops": [
        "GRANT USAGE ON SCHEMA subscribers TO qa_ops",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA subscribers TO qa_ops",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA subscribers TO qa_ops",
    ],
}


def _if_role(role: str, statements: list[str]) -> str:
    body = "\n".join(f"        EXECUTE {stmt!r};" for stmt in statements)
    return (
        "DO $$\nBEGIN\n"
        f"    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN\n"
        f"{body}\n"
        "    END IF;\nEND\n$$"
    )


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS subscribers")
    op.execute("ALTER TABLE feed.inbox SET SCHEMA subscribers")
    op.execute("ALTER TABLE subscribers.inbox RENAME COLUMN consumer TO subscriber")
    op.create_index(
        "ix_inbox_subscriber_processed_at",
        "inbox",
        ["subscriber", "processed_at"],
        schema="subscribers",
    )
    op.execute("ALTER TABLE feed.dead_letters SET SCHEMA subscribers")
    op.execute("ALTER TABLE feed.dead_letter_audit SET SCHEMA subscribers")
    op.execute("ALTER TABLE subscribers.dead_letters ADD COLUMN subscriber varchar(64)")
    op.execute("UPDATE subscribers.dead_letters SET subscriber = 'feed'")
    op.execute("ALTER TABLE subscribers.dead_letters ALTER COLUMN subscriber SET NOT NULL")
    op.create_index(
        "ix_dead_letters_subscriber_status",
        "dead_letters",
        ["subscriber", "status"],
        schema="subscribers",
    )
    for role, statements in GRANTS.items():
        op.execute(_if_role(role, statements))


def downgrade() -> None:
    op.drop_index(
        "ix_dead_letters_subscriber_status", table_name="dead_letters", schema="subscribers"
    )
    op.execute("ALTER TABLE subscribers.dead_letters DROP COLUMN subscriber")
    op.execute("ALTER TABLE subscribers.dead_letter_audit SET SCHEMA feed")
    op.execute("ALTER TABLE subscribers.dead_letters SET SCHEMA feed")
    op.drop_index("ix_inbox_subscriber_processed_at", table_name="inbox", schema="subscribers")
    op.execute("ALTER TABLE subscribers.inbox RENAME COLUMN subscriber TO consumer")
    op.execute("ALTER TABLE subscribers.inbox SET SCHEMA feed")
    op.execute("DROP SCHEMA subscribers")
