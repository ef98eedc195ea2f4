"""Per-aggregate event sequence numbers; question edits.

* ``qa.questions.last_sequence``: the sequence number of the question's latest event;
  existing questions start at 1 (their ``question.created``), so their next event is 2.
* ``feed.questions.state_sequence``: the sequence of the event the feed row's title,
  subject and grade came from (last writer by sequence).
* The API role may update questions (edits, and the sequence counter answers advance).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "title, body, subject, grade, last_sequence"
GRANT = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qa_api') THEN
        EXECUTE '{verb} UPDATE ({columns}) ON qa.questions {prep} qa_api';
    END IF;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "questions",
        sa.Column("last_sequence", sa.BigInteger(), server_default="1", nullable=False),
        schema="qa",
    )
    op.add_column(
        "questions", sa.Column("state_sequence", sa.BigInteger(), nullable=True), schema="feed"
    )
    op.execute(GRANT.format(verb="GRANT", columns=COLUMNS, prep="TO"))


def downgrade() -> None:
    op.execute(GRANT.format(verb="REVOKE", columns=COLUMNS, prep="FROM"))
    op.drop_column("questions", "state_sequence", schema="feed")
    op.drop_column("questions", "last_sequence", schema="qa")
