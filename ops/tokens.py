"""``qa-ops tokens``: bearer tokens (API writers and console operators)."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text
from sqlalchemy import func, insert, select, update

from ops.common import console, engine, err_console, print_json
from ops.tables import fitted
from outbox.models import ApiToken
from outbox.tokens import ROLES, WRITER, check_user_name, hash_token, new_token

app = typer.Typer(help="Bearer tokens: API writers and console operators.", no_args_is_help=True)


def _user(value: str) -> str:
    try:
        return check_user_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--user") from exc


@app.command()
def create(
    user: str = typer.Option(..., "--user", help="User the token acts as (a lowercase slug)."),
    role: str = typer.Option(
        WRITER, "--role", help="writer (API writes, the author) or operator (console sign-in)."
    ),
) -> None:
    """Print a new bearer token for USER. Only its hash is stored."""
    name = _user(user)
    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    token = new_token()
    with engine() as eng, eng.begin() as conn:
        conn.execute(
            insert(ApiToken).values(user_name=name, token_hash=hash_token(token), role=role)
        )
    print(token)


@app.command("list")
def list_(
    user: str | None = typer.Option(None, "--user", help="Only this user's tokens."),
    revoked: bool = typer.Option(False, "--revoked", help="Include revoked tokens."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Tokens (never the secrets): id, user, role, created, revoked."""
    query = select(
        ApiToken.id, ApiToken.user_name, ApiToken.role, ApiToken.created_at, ApiToken.revoked_at
    ).order_by(ApiToken.id)
    if user is not None:
        query = query.where(ApiToken.user_name == user)
    if not revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    with engine() as eng, eng.connect() as conn:
        rows: list[dict[str, Any]] = [dict(r) for r in conn.execute(query).mappings()]
    if as_json:
        print_json(
            [{**r, "created_at": r["created_at"].isoformat(), "revoked_at": _iso(r)} for r in rows]
        )
        return
    cells: list[list[str | Text]] = [
        [
            str(r["id"]),
            r["user_name"],
            r["role"],
            r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            _iso(r) or "-",
        ]
        for r in rows
    ]
    headers = ("id", "user", "role", "created", "revoked")
    table = fitted(f"tokens ({len(rows)})", headers, cells, console.width, keep=3)
    console.print(table)


def _iso(row: dict[str, Any]) -> str | None:
    return row["revoked_at"].isoformat() if row["revoked_at"] is not None else None


@app.command()
def revoke(
    token_id: int = typer.Argument(..., metavar="ID", help="Token id (tokens list)."),
) -> None:
    """Revoke a token. The console refuses it at once; an API process may honour it for
    up to QA_API_TOKEN_CACHE_SECONDS (its token cache)."""
    with engine() as eng, eng.begin() as conn:
        row = conn.execute(
            select(ApiToken.user_name, ApiToken.revoked_at).where(ApiToken.id == token_id)
        ).one_or_none()
        if row is None:
            err_console.print(f"token {token_id} not found")
            raise typer.Exit(1)
        if row.revoked_at is not None:
            console.print(f"token {token_id} ({row.user_name}) was already revoked")
            return
        conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=func.now()))
    console.print(f"revoked token {token_id} ({row.user_name})")
