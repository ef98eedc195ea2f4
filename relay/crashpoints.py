"""Test-only crash points: die like SIGKILL at an exact step of the relay's batch loop.

The chaos suite and the crash-point tests need to kill the relay *between* two steps of
a batch, which a SIGKILL from outside hits only by luck. With ``QA_TEST_HOOKS=1`` and
``QA_RELAY_CRASH_POINT=<name>`` the relay calls ``os._exit(137)`` the N-th time it
reaches that point (``QA_RELAY_CRASH_AFTER=N``, default 1): no ``finally`` blocks, no
rollback, no connection close frames, no flushing - the same as SIGKILL for everything
outside the process (the kernel closes its sockets; PostgreSQL rolls the claim back).

Points (see ``relay/pipeline.py``):

``after_claim``
    rows claimed and locked in the batch transaction, nothing published.
``after_publish``
    the batch's publishes were handed to the channel and given ``QA_RELAY_CRASH_FLUSH_SECONDS``
    (default 0.2) on the event loop to reach the broker; the relay has not looked at a
    single confirm. aio-pika writes frames from its own writer task, so exiting without
    that pause would send nothing and make this point the same as ``after_claim``.
``after_confirm``
    every confirm (or failure) of the batch is known, nothing is marked or committed.

Production never sets ``QA_TEST_HOOKS`` (it is not a ``Settings`` field and no deployment
file mentions it). The environment is read once, at import: unarmed, each hook is one
module-level boolean test per batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

POINTS = frozenset({"after_claim", "after_publish", "after_confirm"})
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL (128 + 9)


@dataclass(frozen=True)
class Plan:
    """Which point to crash at, on which call (1-based), and the publish flush pause."""

    point: str | None = None
    after: int = 1
    flush_seconds: float = 0.2


def load(environ: Mapping[str, str]) -> Plan:
    """The crash plan an environment asks for; an unarmed plan unless hooks are enabled.

    An unknown point name is refused loudly: a test that mistypes it must not pass by
    never crashing.
    """
    if environ.get("QA_TEST_HOOKS") != "1":
        return Plan()
    point = environ.get("QA_RELAY_CRASH_POINT") or None
    if point is None:
        return Plan()
    if point not in POINTS:
        raise ValueError(f"QA_RELAY_CRASH_POINT={point!r}: expected one of {sorted(POINTS)}")
    after = int(environ.get("QA_RELAY_CRASH_AFTER", "1"))
    if after < 1:
        raise ValueError("QA_RELAY_CRASH_AFTER must be >= 1")
    flush = float(environ.get("QA_RELAY_CRASH_FLUSH_SECONDS", "0.2"))
    return Plan(point, after, flush)


PLAN = load(os.environ)
ARMED = PLAN.point is not None
_calls = 0


def _due(name: str) -> bool:
    """Count a call of the armed point; True on the N-th."""
    global _calls
    if name != PLAN.point:
        return False
    _calls += 1
    return _calls == PLAN.after


def _die(name: str) -> None:
    # os.write, not logging: nothing buffered, nothing that could run cleanup code.
    message = f"qa-relay: test crash point {name} reached (call {_calls}), exiting {EXIT_CODE}\n"
    os.write(2, message.encode())
    os._exit(EXIT_CODE)


def crash_point(name: str) -> None:
    """Exit at once with 137 if ``name`` is the armed point and this is its N-th call."""
    if ARMED and _due(name):
        _die(name)


async def crash_point_after_flush(name: str) -> None:
    """Like :func:`crash_point`, but first lets the event loop write pending frames.

    Used where the step before the point only *queued* network writes (publishes): the
    caller does not run during the pause, so it never sees what came back meanwhile.
    """
    if ARMED and _due(name):
        await asyncio.sleep(PLAN.flush_seconds)
        _die(name)
