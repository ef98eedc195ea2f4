"""Helpers shared by the system parts: polling with a deadline, component availability."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import aio_pika

RESULTS = Path(__file__).resolve().parent / "results"


class NotAvailable(Exception):
    """A component of the system is not there yet: the part is reported 'not measured yet'."""


def require_module(module: str, what: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise NotAvailable(f"{what} ({module}) is not there yet")


def poll_until(
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> float:
    """Call ``check`` until it returns True; returns the monotonic time it did.

    ``alive`` is called each round and should raise when the process under test died.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached within {timeout:g}s")
        time.sleep(interval)


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare)."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()
