"""``qa-ops tokens``: API bearer tokens."""

from __future__ import annotations

import typer
from sqlalchemy import insert

from outbox.models import ApiToken
from ops.common import engine
from outbox.tokens import hash_token, new_token

app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)


@app.command()
def create(
    user: str = typer.Option(..., "--user", help="User the token acts as (the author).", min=1),
) -> None:
    """Print a new API bearer token for USER. Only its hash is stored."""
    name = user.strip()
    if not name or len(name) > 64 or "\x00" in name:
        raise typer.BadParameter("user must be 1-64 characters", param_hint="--user")
    token = new_token()
    with engine() as eng, eng.begin() as conn:
        conn.execute(insert(ApiToken).values(user_name=name, token_hash=hash_token(token)))
    print(token)
