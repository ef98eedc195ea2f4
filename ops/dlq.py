"""``qa-ops dlq``: inspect, replay and discard dead letters.

Exit codes: 0 ok (including "already replayed": replay is idempotent), 1 failure (unknown
id, a letter that cannot take the action, database down, confirmation declined),
2 usage error.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import typer
from rich.progress import Progress

from ops.common import console, engine, err_console, print_json
from ops.dlq_render import (
    letter_json,
    plain,
    result_json,
    results_table,
    show_letter,
    summary_table,
)
from outbox import deadletters as store
from outbox import subscribers
from outbox.deadletters import ActionResult, Filters

app = typer.Typer(help="Dead letters: list, show, replay, discard.", no_args_is_help=True)

PROGRESS_THRESHOLD = 20


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 date/time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _status(value: str) -> str | None:
    if value == "all":
        return None
    if value not in store.STATUSES:
        raise typer.BadParameter(f"one of {', '.join((*store.STATUSES, 'all'))}")
    return value


def _subscriber(value: str | None) -> str | None:
    """A known subscriber's name (a typo must not silently match nothing)."""
    if value is None:
        return None
    known = subscribers.discover()
    if value not in known:
        raise typer.BadParameter(
            f"unknown subscriber {value!r} (known: {', '.join(known)})", param_hint="--subscriber"
        )
    return value


def _actor(value: str | None) -> str:
    if value is not None:
        if not value.strip():
            raise typer.BadParameter("actor must not be empty", param_hint="--actor")
        return value.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


TypeOpt = typer.Option(None, "--type", help="Only this event type.")
ErrorClassOpt = typer.Option(None, "--error-class", help="Only this error class.")
SinceOpt = typer.Option(None, "--since", help="Dead-lettered at or after (ISO 8601; UTC if naive).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")
ActorOpt = typer.Option(None, "--actor", help="Who is acting (default: the OS user).")
SubscriberOpt = typer.Option(
    None, "--subscriber", help="Only dead letters of this subscriber (feed, notifier, ...)."
)


@app.command("list")
def list_(
    status: str = typer.Option("dead", "--status", help="dead, replayed, discarded or all."),
    event_type: str | None = TypeOpt,
    error_class: str | None = ErrorClassOpt,
    since: str | None = SinceOpt,
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
    subscriber: str | None = SubscriberOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List dead letters, newest first."""
    filters = Filters(
        _status(status), event_type, error_class, _since(since), limit, _subscriber(subscriber)
    )
    with engine() as eng, eng.connect() as conn:
        rows = store.list_letters(conn, filters)
    if as_json:
        print_json(plain(rows))
        return
    title = f"dead letters ({status}, {len(rows)} shown)"
    console.print(summary_table(rows, title, width=console.width))


@app.command()
def show(letter_id: int = typer.Argument(..., metavar="ID"), as_json: bool = JsonOpt) -> None:
    """Payload, headers, error, traceback excerpt, attempts, timestamps and history."""
    with engine() as eng, eng.connect() as conn:
        letter = store.get_letter(conn, letter_id)
        history = store.audit_history(conn, letter_id) if letter else []
    if letter is None:
        err_console.print(f"dead letter {letter_id} not found")
        raise typer.Exit(1)
    if as_json:
        print_json(letter_json(letter, history))
        return
    show_letter(console, letter, history)


def _report(results: list[ActionResult], title: str, as_json: bool) -> None:
    if as_json:
        print_json([result_json(r) for r in results])
    else:
        console.print(results_table(results, title, width=console.width))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def replay(
    ids: list[int] | None = typer.Argument(None, metavar="[ID]...", help="Dead letter ids."),
    all_: bool = typer.Option(False, "--all", help="Every dead letter in status 'dead'."),
    event_type: str | None = TypeOpt,
    error_class: str | None = ErrorClassOpt,
    since: str | None = SinceOpt,
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many (oldest)."),
    subscriber: str | None = SubscriberOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen only."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-deliver dead letters to the queue that failed them (through the outbox)."""
    who = _actor(actor)
    filtered = any(v is not None for v in (event_type, error_class, since, limit, subscriber))
    if ids and (all_ or filtered):
        raise typer.BadParameter("give ids, or --all, or filters; not both")
    if not ids and not all_ and not filtered:
        raise typer.BadParameter(
            "give dead letter ids, --all, or filters (--type, --subscriber ...)"
        )
    with engine() as eng:
        if not ids:
            filters = Filters(
                "dead", event_type, error_class, _since(since), limit, _subscriber(subscriber)
            )
            with eng.connect() as conn:
                ids = store.select_ids(conn, filters)
        if dry_run:
            with eng.connect() as conn:
                results = [store.preview(conn, i) for i in ids]
            _report(results, "replay (dry run: nothing changed)", as_json)
            return
        if not ids:
            _report([], "replay: no dead letter matches", as_json)
            return
        if not yes:
            typer.confirm(f"Replay {len(ids)} dead letter(s) as {who}?", abort=True, err=True)
        results = []
        show_bar = len(ids) >= PROGRESS_THRESHOLD and not as_json
        with Progress(console=err_console, disable=not show_bar, transient=True) as bar:
            task = bar.add_task("replaying", total=len(ids))
            for letter_id in ids:
                results.append(store.replay(eng, letter_id, who))
                bar.advance(task)
    _report(results, f"replay by {who}", as_json)


@app.command()
def discard(
    ids: list[int] = typer.Argument(..., metavar="ID...", help="Dead letter ids."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Mark dead letters discarded (kept, never replayed), with a reason."""
    if not reason.strip():
        raise typer.BadParameter("a reason is required", param_hint="--reason")
    who = _actor(actor)
    with engine() as eng:
        results = [store.discard(eng, i, who, reason.strip()) for i in ids]
    _report(results, f"discard by {who}", as_json)
