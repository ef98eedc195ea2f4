"""Vacuum the outbox by row count, not table fraction, and without throttling.

The relay marks rows published (an UPDATE) and later deletes them; until vacuum runs,
the pending-rows index keeps the dead entries in front of the live ones and every claim
walks over them (the benchmark measured a claim at 5x its cost mid-drain of a 1M
backlog). A fixed threshold keeps that bounded whatever the table size.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE qa.outbox SET (autovacuum_vacuum_scale_factor = 0,"
        " autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_cost_delay = 0,"
        " autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE qa.outbox SET (autovacuum_vacuum_scale_factor = 0.01,"
        " autovacuum_vacuum_insert_scale_factor = 0.01)"
    )
    op.execute(
        "ALTER TABLE qa.outbox RESET (autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay,"
        " autovacuum_vacuum_insert_threshold)"
    )
