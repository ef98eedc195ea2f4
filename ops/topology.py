"""``qa-ops topology check``: does the live broker match every subscriber's declaration?

Reads the broker through the management HTTP API (``QA_RABBITMQ_MANAGEMENT_URL``) for the
vhost of ``QA_AMQP_URL`` and compares it with the registered subscribers
(:func:`outbox.subscribers.discover`), ``QA_RETRY_DELAYS`` and ``QA_DELIVERY_LIMIT``.
Exit 0 when they agree, 1 with a readable list of differences (each with its fix), or
when the management API cannot be read.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from ops.common import console, err_console, print_json
from outbox import subscribers
from outbox.broker_api import read_broker, vhost_of
from outbox.settings import Settings
from outbox.topology_check import check

app = typer.Typer(help="Broker topology: compare the live broker with the declarations.")

# The process users of deploy/rabbitmq-users.sh; other subscribers run as qa_<name>.
DEFAULT_USERS = {"relay": "qa_relay", "archiver": "qa_archiver", "feed": "qa_consumer"}


def _users(values: list[str] | None, names: list[str]) -> dict[str, str]:
    users = {**{n: f"qa_{n}" for n in names}, **DEFAULT_USERS}
    for value in values or []:
        role, sep, user = value.partition("=")
        if not sep or not role or not user:
            raise typer.BadParameter(f"expected ROLE=USER, got {value!r}", param_hint="--user")
        users[role] = user
    return users


@app.command("check")
def check_(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    user: list[str] | None = typer.Option(
        None,
        "--user",
        metavar="ROLE=USER",
        help="Broker user of a process (relay, archiver or a subscriber's name); "
        "defaults: relay=qa_relay, archiver=qa_archiver, feed=qa_consumer, NAME=qa_NAME.",
    ),
) -> None:
    """Compare exchanges, queues, arguments, bindings, retry tiers and permissions."""
    settings = Settings()
    declared = subscribers.discover()
    vhost = vhost_of(settings.amqp_url)
    try:
        live = read_broker(settings.rabbitmq_management_url, vhost)
    except Exception as exc:  # unreachable, refused credentials, no such vhost
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err_console.print(f"cannot read the broker's management API: {escape(reason)}")
        raise typer.Exit(1) from None
    users = _users(user, list(declared))
    differences = check(
        live,
        declared,
        settings.retry_delays,
        settings.delivery_limit,
        users,
        settings.quorum_initial_group_size,
    )
    if as_json:
        print_json(
            {
                "vhost": vhost,
                "subscribers": list(declared),
                "ok": not differences,
                "differences": [d.as_dict() for d in differences],
            }
        )
    elif not differences:
        console.print(
            f"topology of vhost {escape(vhost)!r} matches {len(declared)} subscriber(s): "
            + ", ".join(declared)
        )
    else:
        console.print(
            f"topology of vhost {escape(vhost)!r} differs from the declarations "
            f"({len(differences)} difference(s)):"
        )
        for d in differences:
            console.print(
                f"- [bold]{escape(d.object)}[/] ({escape(d.subscriber)}): {escape(d.problem)}: "
                f"expected {escape(d.expected)}, found {escape(d.actual)}\n"
                f"  fix: {escape(d.fix)}",
                soft_wrap=True,
            )
    if differences:
        raise typer.Exit(1)
