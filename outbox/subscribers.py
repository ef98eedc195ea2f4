"""What a subscriber IS: one declaration, and how every process finds all of them.

A subscriber is one :class:`Subscriber` value: its name, a handler per ``(event type,
version)`` it accepts, the settings field naming the database its state lives in, and
its tuning. Everything else is derived from it by the runtime (``consumers/runtime``)
and by the operators' tools (``ops/``), never written by hand:

=====================  =====================================================
queue                  ``<name>.events`` (quorum), bound to ``qa.events`` with
                       exactly the accepted event types as routing keys
retry tiers            ``<name>.retry.<ms>ms`` (``QA_RETRY_DELAYS``)
dead letters           ``<name>.dead``, archived with ``subscriber = <name>``
inbox rows             ``subscribers.inbox`` keyed by ``(<name>, event id)``
metrics                every ``qa_subscriber_*`` series labelled ``subscriber="<name>"``
replay allow-list      ``qa-ops dlq replay`` re-delivers only to ``<name>.events``
start command          ``qa-consumer run <name>``
=====================  =====================================================

Two shapes of handler, mixable within one subscriber:

* :class:`Projection` - a database projection. The runtime applies a whole batch of
  events in ONE transaction on the subscriber's database, together with their inbox
  rows; ``apply`` receives only the events the inbox has not seen. It must not commit.
* :class:`SideEffect` - an external effect (an email) per event. The runtime skips events
  already in the inbox, calls ``perform`` for each other one, and writes the inbox row
  (the sent-log) right after ``perform`` returned. ``perform`` raises
  :class:`~outbox.errors.TransientError` for "later" (retry tiers),
  :class:`~outbox.errors.PermanentMessageError` for "never" (dead letter at once); any
  other exception gets ``QA_UNKNOWN_ERROR_RETRIES`` retries, then a dead letter.

Discovery: subscribers are registered as Python entry points in group ``qa.subscribers``
(``pyproject.toml``: ``feed = "consumers.feed:SUBSCRIBER"``). :func:`discover` loads them
through ``importlib.metadata``, so ``ops/`` and the runtime find every subscriber without
importing ``consumers/`` by name (imports keep pointing one way: a subscriber module
imports only ``outbox``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from outbox.events import DecodedEvent
from outbox.settings import Settings
from outbox.topology import dead_queue_name, queue_name

ENTRY_POINT_GROUP = "qa.subscribers"
EventKey = tuple[str, int]


@dataclass(frozen=True)
class Projection:
    """Apply events to the subscriber's database in the runtime's transaction."""

    apply: Callable[[AsyncConnection, Sequence[DecodedEvent]], Awaitable[None]]


@dataclass(frozen=True)
class SideEffect:
    """Perform one event's external effect. ``perform(resources, event)``: ``resources`` is
    what the subscriber's ``resources`` factory yielded (None without one)."""

    perform: Callable[[Any, DecodedEvent], Awaitable[None]]


Handler = Projection | SideEffect


@dataclass(frozen=True)
class Tuning:
    """Per-subscriber knobs; ``None`` means the global ``QA_CONSUMER_*`` setting."""

    prefetch: int | None = None
    batch_size: int | None = None
    batch_wait_ms: int | None = None
    # Side effects of one batch performed concurrently (at most).
    effect_concurrency: int = 8
    # The Settings field holding this subscriber's /metrics port (0 disables).
    metrics_port_setting: str = "consumer_metrics_port"


@dataclass(frozen=True)
class Subscriber:
    """One subscriber, declared once. See the module docstring for what follows from it."""

    name: str
    handlers: Mapping[EventKey, Handler]
    # The Settings field with the URL of the database holding its state and inbox;
    # when that field is None, QA_DATABASE_URL.
    database_setting: str = "database_url"
    # Opened once at start-up with the settings and the state engine, closed at stop
    # (an SMTP client, ...); what it yields is passed to every SideEffect.
    resources: Callable[[Settings, Any], AbstractAsyncContextManager[Any]] | None = None
    tuning: Tuning = field(default_factory=Tuning)
    # Routing keys it was bound with before and no longer wants: unbound at every start
    # (bindings are never removed by a redeclare).
    retired_bindings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"subscriber name {self.name!r}: lowercase letters, digits, _")
        if not self.handlers:
            raise ValueError(f"subscriber {self.name!r} handles no event")

    @property
    def queue(self) -> str:
        return queue_name(self.name)

    @property
    def dead_queue(self) -> str:
        return dead_queue_name(self.name)

    @property
    def bindings(self) -> tuple[str, ...]:
        """Routing keys on ``qa.events``: exactly the accepted event types."""
        return tuple(sorted({event_type for event_type, _ in self.handlers}))

    def accepts(self, event_type: str, version: int) -> bool:
        return (event_type, version) in self.handlers

    def database_url(self, settings: Settings) -> Any:
        """The SecretStr URL of the subscriber's database."""
        return getattr(settings, self.database_setting, None) or settings.database_url

    def metrics_port(self, settings: Settings) -> int:
        return int(getattr(settings, self.tuning.metrics_port_setting))


@functools.cache
def discover() -> Mapping[str, Subscriber]:
    """Every registered subscriber by name (entry point group ``qa.subscribers``)."""
    found: dict[str, Subscriber] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        subscriber = point.load()
        if not isinstance(subscriber, Subscriber) or subscriber.name != point.name:
            raise TypeError(f"entry point {point.name!r} is not Subscriber {point.name!r}")
        found[point.name] = subscriber
    return dict(sorted(found.items()))


def get(name: str) -> Subscriber:
    """The subscriber called ``name``; KeyError (listing the known ones) otherwise."""
    known = discover()
    if name not in known:
        raise KeyError(f"unknown subscriber {name!r} (known: {', '.join(known) or 'none'})")
    return known[name]


def replayable_queues() -> frozenset[str]:
    """Queues a dead letter may be replayed to: every subscriber's own queue."""
    return frozenset(s.queue for s in discover().values())
