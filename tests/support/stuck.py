"""Where stuck asyncio tasks wait: for failure messages of tests that detect hangs."""

from __future__ import annotations

import asyncio


def awaiting(task: asyncio.Task[object]) -> list[str]:
    """A task's chain of awaited coroutines as ``function:line``, innermost last."""
    out, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return out


def pending_tasks() -> str:
    """Every unfinished task of the running loop and where it waits, one per line."""
    return "\n".join(
        f"{t.get_name()}: " + " <- ".join(awaiting(t)) for t in asyncio.all_tasks() if not t.done()
    )
