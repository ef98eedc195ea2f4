"""Least-privilege grants for the per-process database roles, where those roles exist.

Each process can log in as its own role (created by the deployment, e.g. the docker-compose
init script) with only the privileges it needs. On a development database without these
roles the migration does nothing, so the owner role keeps working for everything.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# role -> (schemas it may use, [(privileges, tables)])
GRANTS: dict[str, tuple[tuple[str, ...], list[tuple[str, str]]]] = {
    "qa_api": (
        ("qa", "feed"),
        [
            ("SELECT", "qa.api_tokens"),
            ("SELECT, INSERT", "qa.questions, qa.answers, qa.idempotency_keys"),
            ("INSERT", "qa.outbox"),
            ("SELECT", "feed.questions"),
        ],
    ),
    "qa_relay": (("qa",), [("SELECT, UPDATE, DELETE", "qa.outbox")]),
    "qa_consumer": (
        ("feed",),
        [("SELECT, INSERT, UPDATE", "feed.questions"), ("SELECT, INSERT", "feed.inbox")],
    ),
    "qa_archiver": (("feed",), [("SELECT, INSERT", "feed.dead_letters")]),
    "qa_ops": (
        ("qa", "feed"),
        [
            ("SELECT, INSERT, UPDATE, DELETE", "ALL TABLES IN SCHEMA qa"),
            ("SELECT, INSERT, UPDATE, DELETE", "ALL TABLES IN SCHEMA feed"),
        ],
    ),
}
SEQUENCES = {
    "qa_api": ("qa",),
    "qa_archiver": ("feed",),
    "qa_ops": ("qa", "feed"),
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
    for role, (schemas, grants) in GRANTS.items():
        statements = [f"GRANT USAGE ON SCHEMA {', '.join(schemas)} TO {role}"]
        statements += [f"GRANT {privs} ON {tables} TO {role}" for privs, tables in grants]
        statements += [
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
            for schema in SEQUENCES.get(role, ())
        ]
        op.execute(_if_role(role, statements))


def downgrade() -> None:
    for role, (schemas, _) in GRANTS.items():
        statements = [
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}" for schema in schemas
        ]
        statements += [
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}" for schema in schemas
        ]
        statements += [f"REVOKE USAGE ON SCHEMA {', '.join(schemas)} FROM {role}"]
        op.execute(_if_role(role, statements))
