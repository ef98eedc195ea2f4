"""One delivered message on its way through a batch, and how a batch is routed.

:func:`route` decodes a message (in a version the subscriber declared, converted down
when a downcaster exists) and finds the subscriber's handler for its ``(type,
version)``. Anything that cannot be routed is a permanent failure of THIS message only
(dead-lettered on its first delivery), never an exception that escapes the batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from outbox import logs
from outbox.errors import PermanentMessageError
from outbox.events import DecodedEvent
from outbox.subscribers import Handler, Subscriber
from outbox.versions import decode_for


@dataclass
class Item:
    """A message, its decoded event and handler, and what became of it."""

    message: AbstractIncomingMessage
    event: DecodedEvent | None = None
    handler: Handler | None = None
    error: Exception | None = None
    # True: applied now; False: the inbox had it (duplicate); None: not (yet) applied.
    applied: bool | None = None


def logged(item: Item) -> contextlib.AbstractContextManager[None]:
    """Log lines written inside carry this message's ``event_id`` and ``delivery_tag``.

    For the code that handles ONE message (a side effect, an isolated projection event,
    a retry or dead-letter copy); a whole batch is bound to its subscriber only.
    """
    event_id = item.event.envelope.id if item.event is not None else item.message.message_id
    fields: dict[str, object] = {"delivery_tag": item.message.delivery_tag}
    if event_id:
        fields["event_id"] = str(event_id)
    return logs.bind(**fields)


def route(subscriber: Subscriber, message: AbstractIncomingMessage) -> Item:
    """Decode ``message`` and pick its handler; a failure is recorded on the item."""
    try:
        # A newer version of a declared type is converted down (outbox.versions).
        event = decode_for(message.body, subscriber.handlers.keys())
    except PermanentMessageError as exc:
        return Item(message, error=exc)
    env = event.envelope
    return Item(message, event=event, handler=subscriber.handlers[(env.type, env.version)])
