"""Token roles: ``writer`` (API tokens, the default) and ``operator`` (console sign-in).

Existing tokens become writers. Revocation already has its column (``revoked_at``);
an index on ``user_name`` serves ``qa-ops tokens list --user``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column("role", sa.String(length=16), server_default="writer", nullable=False),
        schema="qa",
    )
    op.create_check_constraint(
        op.f("ck_api_tokens_role"), "api_tokens", "role IN ('writer', 'operator')", schema="qa"
    )
    op.create_index(
        op.f("ix_api_tokens_user_name"), "api_tokens", ["user_name"], unique=False, schema="qa"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_api_tokens_user_name"), table_name="api_tokens", schema="qa")
    op.drop_constraint("ck_api_tokens_role", "api_tokens", schema="qa", type_="check")
    op.drop_column("api_tokens", "role", schema="qa")
