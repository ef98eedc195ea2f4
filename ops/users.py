"""``qa-ops users``: users and their e-mail addresses for the notifier.

Each change writes the user and its ``user.registered`` / ``user.updated`` event in one
transaction. Exit codes: 0 ok (also "nothing to change"), 1 unknown or existing user,
2 invalid name or address.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ops.common import console, engine, err_console, print_json
from outbox import users as store
from outbox.errors import NotFound

app = typer.Typer(help="Users and their e-mail addresses (for the notifier).", no_args_is_help=True)


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _change(name: str, verb: str, **values: Any) -> None:
    try:
        with engine() as eng, eng.begin() as conn:
            state, changed = store.change(conn, name, **values)
    except store.InvalidUserInput as exc:
        raise _fail(str(exc), 2) from None
    except NotFound as exc:
        raise _fail(str(exc), 1) from None
    console.print(f"user {state.name} {verb}" if changed else f"user {state.name}: no change")


@app.command()
def create(
    name: str = typer.Argument(..., help="User name: the name its tokens act as (a slug)."),
    email: str | None = typer.Option(None, "--email", help="Address for notifications."),
) -> None:
    """Create a user (emits user.registered). Without --email it gets no mail."""
    try:
        with engine() as eng, eng.begin() as conn:
            state = store.create(conn, name, email)
    except store.InvalidUserInput as exc:
        raise _fail(str(exc), 2) from None
    except store.UserExists as exc:
        raise _fail(str(exc), 1) from None
    console.print(f"user {state.name} created" + (f" <{state.email}>" if state.email else ""))


@app.command("set-email")
def set_email(
    name: str = typer.Argument(..., help="User name."),
    address: str = typer.Argument(..., help="New address for notifications."),
) -> None:
    """Set a user's address (emits user.updated)."""
    try:
        checked = store.valid_email(address)
    except store.InvalidUserInput as exc:
        raise _fail(str(exc), 2) from None
    _change(name, f"now <{checked}>", email=checked)


@app.command("opt-out")
def opt_out(name: str = typer.Argument(..., help="User name.")) -> None:
    """Stop notification mails to a user (emits user.updated)."""
    _change(name, "opted out", opted_out=True)


@app.command("opt-in")
def opt_in(name: str = typer.Argument(..., help="User name.")) -> None:
    """Resume notification mails to a user (emits user.updated)."""
    _change(name, "opted in", opted_out=False)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List users, their addresses and opt-out state."""
    with engine() as eng, eng.connect() as conn:
        users = store.list_users(conn)
    if as_json:
        print_json([user.as_json() for user in users])
        return
    table = Table("name", "email", "opted out", "revision", "updated")
    for user in users:
        table.add_row(
            user.name,
            user.email or "-",
            "yes" if user.opted_out else "no",
            str(user.revision),
            f"{user.updated_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)
