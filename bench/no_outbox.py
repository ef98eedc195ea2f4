"""The benchmark's own API variant: the same ``qa-api`` without the outbox write.

The API write benchmark compares the endpoint with and without the outbox row. Production
code has no switch for that: this module replaces ``UnitOfWork.add_event`` with a no-op in
the benchmark's process only (``python -m bench.no_outbox`` runs ``qa-api`` that way;
:func:`without_outbox` does it in-process). It breaks guarantee 1 by design and is never
installed outside ``bench/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from outbox.events import Envelope
from outbox.uow import UnitOfWork


def _skip(self: UnitOfWork, envelope: Envelope) -> None:
    """Write nothing: the measured difference is the outbox row."""


@contextlib.contextmanager
def without_outbox() -> Iterator[None]:
    """In this process, writes emit no outbox row until the block ends."""
    original = UnitOfWork.add_event
    UnitOfWork.add_event = _skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        UnitOfWork.add_event = original  # type: ignore[method-assign]


def main() -> None:
    """``qa-api`` without the outbox write (benchmark only)."""
    from api.main import main as api_main

    with without_outbox():
        api_main()


if __name__ == "__main__":
    main()
