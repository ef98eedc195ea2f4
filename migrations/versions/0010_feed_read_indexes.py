"""Feed read-path indexes: a page filtered by subject only, or by grade only.

Measured on a 2M-row read model (``python -m bench --only feed-read``): without them a
page of ``GET /feed?subject=latin&answered=false`` walked the newest-first index and
filtered (212 ms, 37k buffers); ``grade=1&answered=false`` took 6 ms. With them each is
an index range scan in the requested order. ``subject + grade`` already had its index.

Built ``CONCURRENTLY`` (outside a transaction) so a running feed consumer is not
blocked while a large table is indexed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_feed_questions_subject": "subject, created_at DESC, question_id DESC",
    "ix_feed_questions_grade": "grade, created_at DESC, question_id DESC",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns in _INDEXES.items():
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON feed.questions ({columns})"
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in _INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS feed.{name}")
