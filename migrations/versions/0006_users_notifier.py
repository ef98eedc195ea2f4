"""Users with e-mail addresses (qa.users) and the email notifier's own state (notifier.*).

Grants, where the roles exist: ``qa_ops`` manages users; ``qa_notifier`` (the notifier
process) reads and writes only its own schema and its inbox rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANTS = {
    "qa_ops": [
        "GRANT SELECT, INSERT, UPDATE, DELETE ON qa.users TO qa_ops",
        "GRANT USAGE ON SCHEMA notifier TO qa_ops",
        "GRANT SELECT ON ALL TABLES IN SCHEMA notifier TO qa_ops",
    ],
    "qa_notifier": [
        "GRANT USAGE ON SCHEMA notifier TO qa_notifier",
        "GRANT SELECT, INSERT, UPDATE ON notifier.users, notifier.questions TO qa_notifier",
        "GRANT SELECT, INSERT, DELETE ON notifier.deliveries TO qa_notifier",
        # its sent-log: the runtime's inbox rows for subscriber 'notifier' (migration 0005)
        "GRANT USAGE ON SCHEMA subscribers TO qa_notifier",
        "GRANT SELECT, INSERT, DELETE ON subscribers.inbox TO qa_notifier",
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


def _timestamp(name: str, default: str = "now()") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text(default), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("opted_out", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_users")),
        schema="qa",
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS notifier")
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_users")),
        schema="notifier",
    )
    op.create_table(
        "questions",
        sa.Column("question_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=True),
        sa.Column("title_at", sa.DateTime(timezone=True), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("question_id", name=op.f("pk_questions")),
        schema="notifier",
    )
    op.create_table(
        "deliveries",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("answer_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("question_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        _timestamp("recorded_at", "clock_timestamp()"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_deliveries")),
        schema="notifier",
    )
    for role, statements in GRANTS.items():
        op.execute(_if_role(role, statements))


def downgrade() -> None:
    op.drop_table("deliveries", schema="notifier")
    op.drop_table("questions", schema="notifier")
    op.drop_table("users", schema="notifier")
    op.execute("DROP SCHEMA IF EXISTS notifier")
    op.drop_table("users", schema="qa")
