"""Relay shards: qa.outbox.shard (hash of the aggregate id mod QA_RELAY_SHARDS, set by the
writer) and the pending-row index each shard's claim walks in id order.

Existing rows get shard 0; with the default of one shard the relay ignores the column.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "outbox",
        sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False),
        schema="qa",
    )
    op.create_index(
        "ix_outbox_pending_shard",
        "outbox",
        ["shard", "id"],
        unique=False,
        schema="qa",
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_shard", table_name="outbox", schema="qa")
    op.drop_column("outbox", "shard", schema="qa")
