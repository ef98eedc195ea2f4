"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 19:08:40.362460
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


NOTIFY_FUNCTION = """
CREATE FUNCTION qa.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('qa_outbox', '');
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS qa")
    op.execute("CREATE SCHEMA IF NOT EXISTS feed")
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dedup_key", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=True),
        sa.Column("routing_key", sa.String(length=255), nullable=True),
        sa.Column("failed_queue", sa.String(length=255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("error_class", sa.String(length=200), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("disposition", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "archived_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="dead", nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_dead_letters_dedup_key")),
        schema="feed",
    )
    op.create_index(
        op.f("ix_dead_letters_error_class"),
        "dead_letters",
        ["error_class"],
        unique=False,
        schema="feed",
    )
    op.create_index(
        op.f("ix_dead_letters_event_type"),
        "dead_letters",
        ["event_type"],
        unique=False,
        schema="feed",
    )
    op.create_index(
        op.f("ix_dead_letters_status_dead_lettered_at"),
        "dead_letters",
        ["status", "dead_lettered_at"],
        unique=False,
        schema="feed",
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
        schema="feed",
    )
    op.create_table(
        "questions",
        sa.Column("question_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("subject", sa.String(length=40), nullable=True),
        sa.Column("grade", sa.SmallInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_answer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "answered",
            sa.Boolean(),
            sa.Computed("answer_count > 0", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("question_id", name=op.f("pk_questions")),
        schema="feed",
    )
    op.create_index(
        "ix_feed_questions_newest",
        "questions",
        [sa.literal_column("created_at DESC"), sa.literal_column("question_id DESC")],
        unique=False,
        schema="feed",
    )
    op.create_index(
        "ix_feed_questions_subject_grade",
        "questions",
        [
            "subject",
            "grade",
            sa.literal_column("created_at DESC"),
            sa.literal_column("question_id DESC"),
        ],
        unique=False,
        schema="feed",
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        schema="qa",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_name", "key", name=op.f("pk_idempotency_keys")),
        schema="qa",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("aggregate_type", sa.String(length=50), nullable=False),
        sa.Column("aggregate_id", sa.String(length=100), nullable=False),
        sa.Column("exchange", sa.String(length=255), server_default="qa.events", nullable=False),
        sa.Column("routing_key", sa.String(length=255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="qa",
    )
    op.create_index(op.f("ix_outbox_event_id"), "outbox", ["event_id"], unique=False, schema="qa")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        unique=False,
        schema="qa",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        unique=False,
        schema="qa",
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_table(
        "questions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("grade", sa.SmallInteger(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questions")),
        schema="qa",
    )
    op.create_table(
        "dead_letter_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dead_letter_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dead_letter_id"],
            ["feed.dead_letters.id"],
            name=op.f("fk_dead_letter_audit_dead_letter_id_dead_letters"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter_audit")),
        schema="feed",
    )
    op.create_index(
        op.f("ix_dead_letter_audit_dead_letter_id"),
        "dead_letter_audit",
        ["dead_letter_id"],
        unique=False,
        schema="feed",
    )
    op.create_table(
        "answers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("question_id", sa.UUID(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["question_id"], ["qa.questions.id"], name=op.f("fk_answers_question_id_questions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answers")),
        schema="qa",
    )
    op.create_index(
        op.f("ix_answers_question_id_created_at"),
        "answers",
        ["question_id", "created_at"],
        unique=False,
        schema="qa",
    )
    # The outbox is a hot queue table: rows are inserted, updated once, then deleted.
    # Vacuum it often so dead tuples do not slow the pending-rows index scan.
    op.execute(
        "ALTER TABLE qa.outbox SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01,"
        " autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02)"
    )
    # Wake the relay at commit time (one notification per statement, delivered on commit).
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON qa.outbox"
        " FOR EACH STATEMENT EXECUTE FUNCTION qa.outbox_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON qa.outbox")
    op.execute("DROP FUNCTION IF EXISTS qa.outbox_notify()")
    op.drop_index(op.f("ix_answers_question_id_created_at"), table_name="answers", schema="qa")
    op.drop_table("answers", schema="qa")
    op.drop_index(
        op.f("ix_dead_letter_audit_dead_letter_id"), table_name="dead_letter_audit", schema="feed"
    )
    op.drop_table("dead_letter_audit", schema="feed")
    op.drop_table("questions", schema="qa")
    op.drop_index(
        "ix_outbox_published_at",
        table_name="outbox",
        schema="qa",
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_outbox_pending",
        table_name="outbox",
        schema="qa",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index(op.f("ix_outbox_event_id"), table_name="outbox", schema="qa")
    op.drop_table("outbox", schema="qa")
    op.drop_table("idempotency_keys", schema="qa")
    op.drop_table("api_tokens", schema="qa")
    op.drop_index("ix_feed_questions_subject_grade", table_name="questions", schema="feed")
    op.drop_index("ix_feed_questions_newest", table_name="questions", schema="feed")
    op.drop_table("questions", schema="feed")
    op.drop_table("inbox", schema="feed")
    op.drop_index(
        op.f("ix_dead_letters_status_dead_lettered_at"), table_name="dead_letters", schema="feed"
    )
    op.drop_index(op.f("ix_dead_letters_event_type"), table_name="dead_letters", schema="feed")
    op.drop_index(op.f("ix_dead_letters_error_class"), table_name="dead_letters", schema="feed")
    op.drop_table("dead_letters", schema="feed")
