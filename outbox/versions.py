"""Which event versions a subscriber gets: its declaration, and converters for old ones.

The policy (README "Event versioning"):

* an additive change (a new optional field) keeps the version; readers ignore fields
  they do not know (``outbox.events`` models are tolerant readers);
* a breaking change (a field removed, renamed, moved or retyped, a new required field)
  is a new version, and producers emit only the newest version of each type;
* each subscriber declares the (type, version) pairs it accepts;
* every breaking change ships a *downcaster* from the new version to the one before,
  registered in :data:`DOWNCASTERS`. A subscriber declared only for the old version gets
  the new event converted in its decode path, so old subscribers keep working with no
  dual emission. A downcaster stays as long as some subscriber declares the old version;
* an event no downcaster can bring to a version the subscriber declared (a future
  version, a type it does not know) is a permanent failure: dead-lettered on the first
  delivery, never retried, never a crash.

There is no upcaster: version 1 of ``answer.created`` lacks the question state version 2
carries, so it cannot be invented. A subscriber that wants version 2 also declares
version 1 for as long as version 1 events may still arrive (outbox retention, dead
letters replayed later) and handles both.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from pydantic import BaseModel

from outbox.errors import UnknownEventType
from outbox.events import AnswerCreatedV1, AnswerCreatedV2, DecodedEvent, decode

EventKey = tuple[str, int]
Downcaster = Callable[[BaseModel], BaseModel]


def _answer_created_v2_to_v1(data: BaseModel) -> BaseModel:
    assert isinstance(data, AnswerCreatedV2)
    return AnswerCreatedV1(
        answer_id=data.answer_id,
        question_id=data.question.id,
        author=data.author,
        created_at=data.created_at,
    )


DOWNCASTERS: dict[EventKey, Downcaster] = {
    ("answer.created", 2): _answer_created_v2_to_v1,
}
"""(type, version) -> a function from that version's data to version - 1's data."""


def for_subscriber(event: DecodedEvent, accepts: Collection[EventKey]) -> DecodedEvent:
    """``event`` in a version the subscriber declared, converted down if need be.

    Raises :class:`UnknownEventType` (a permanent failure) when no declared version is
    reachable.
    """
    env = event.envelope
    key: EventKey = (env.type, env.version)
    data = event.data
    while key not in accepts:
        downcast = DOWNCASTERS.get(key)
        if downcast is None:
            declared = sorted(v for t, v in accepts if t == env.type)
            raise UnknownEventType(
                f"{env.type} v{env.version} is not accepted by this subscriber "
                f"(declared versions: {declared or 'none'})"
            )
        data = downcast(data)
        key = (key[0], key[1] - 1)
    if key[1] == env.version:
        return event
    converted = env.model_copy(update={"version": key[1], "data": data.model_dump(mode="json")})
    return DecodedEvent(converted, data)


def decode_for(body: bytes, accepts: Collection[EventKey]) -> DecodedEvent:
    """:func:`outbox.events.decode`, then :func:`for_subscriber`."""
    return for_subscriber(decode(body), accepts)
