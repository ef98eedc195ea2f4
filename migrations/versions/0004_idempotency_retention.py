"""Idempotency keys expire: an index to find old ones, and DELETE for the API role.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANT = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qa_api') THEN
        EXECUTE '{verb} DELETE ON qa.idempotency_keys {prep} qa_api';
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_index(
        op.f("ix_idempotency_keys_created_at"),
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="qa",
    )
    op.execute(GRANT.format(verb="GRANT", prep="TO"))


def downgrade() -> None:
    op.execute(GRANT.format(verb="REVOKE", prep="FROM"))
    op.drop_index(
        op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys", schema="qa"
    )
