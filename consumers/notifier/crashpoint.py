"""Test-only crash point of the notifier: die like SIGKILL after the SMTP server accepted a
mail and before the sent-log row is written - the one window where a mail can go twice.

With ``QA_TEST_HOOKS=1`` and ``QA_NOTIFIER_CRASH_POINT=after_send`` the notifier calls
``os._exit(137)`` the N-th time it gets there (``QA_NOTIFIER_CRASH_AFTER=N``, default 1):
no ``finally`` blocks, no rollback, no AMQP close - the unacked message goes back to the
queue as after a SIGKILL. Production never sets ``QA_TEST_HOOKS``; unarmed, the hook is
one boolean test per mail. The environment is read once, at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

POINTS = frozenset({"after_send"})
EXIT_CODE = 137


def load(environ: Mapping[str, str]) -> tuple[str | None, int]:
    """The armed point and on which call it fires; refuses unknown names loudly."""
    if environ.get("QA_TEST_HOOKS") != "1":
        return None, 0
    point = environ.get("QA_NOTIFIER_CRASH_POINT") or None
    if point is None:
        return None, 0
    if point not in POINTS:
        raise ValueError(f"QA_NOTIFIER_CRASH_POINT={point!r}: expected one of {sorted(POINTS)}")
    after = int(environ.get("QA_NOTIFIER_CRASH_AFTER", "1"))
    if after < 1:
        raise ValueError("QA_NOTIFIER_CRASH_AFTER must be >= 1")
    return point, after


_POINT, _AFTER = load(os.environ)
_calls = 0


def crash_point(name: str) -> None:
    """Exit at once with 137 if ``name`` is armed and this is its N-th call."""
    global _calls
    if _POINT is None or name != _POINT:
        return
    _calls += 1
    if _calls == _AFTER:
        os.write(2, f"qa-notifier: test crash point {name} reached, exiting 137\n".encode())
        os._exit(EXIT_CODE)
