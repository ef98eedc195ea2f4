"""The notifier orders question titles by the event's per-aggregate sequence.

``notifier.questions.title_sequence`` is the envelope ``sequence`` of the event whose title
is stored: last writer by sequence, never by arrival or clock (``title_at`` only breaks
ties between events from before sequences existed, which all count as 0). Rows created by
an answer before any title-bearing event keep -1.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "questions",
        sa.Column("title_sequence", sa.BigInteger(), server_default="0", nullable=False),
        schema="notifier",
    )
    op.execute("UPDATE notifier.questions SET title_sequence = -1 WHERE title_at = '-infinity'")


def downgrade() -> None:
    op.drop_column("questions", "title_sequence", schema="notifier")
