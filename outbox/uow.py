"""Unit of work: one database transaction; adding an event writes its outbox row in it.

``async with uow:`` rolls back unless :meth:`UnitOfWork.commit` was called. Nothing
here commits on its own and nothing here talks to the broker.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outbox.events import Envelope
from outbox.models import OutboxRow
from outbox.topology import EVENTS_EXCHANGE


def outbox_values(envelope: Envelope, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Column values of the outbox row that publishes ``envelope`` to ``qa.events``."""
    return {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_id,
        "exchange": EVENTS_EXCHANGE,
        "routing_key": envelope.type,
        "body": envelope.to_bytes(),
        "headers": headers or {},
    }


def outbox_row(envelope: Envelope, headers: dict[str, Any] | None = None) -> OutboxRow:
    """The same row as an ORM object."""
    return OutboxRow(**outbox_values(envelope, headers))


class UnitOfWork:
    """One transaction over the write model and the outbox."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self._committed = False
        self._events: list[dict[str, Any]] = []

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._committed = False
        self._events = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if not self._committed:
                await session.rollback()
        finally:
            await session.close()
            self._session = None

    def add(self, entity: object) -> None:
        self.session.add(entity)

    def add_event(self, envelope: Envelope) -> None:
        """Write ``envelope`` to the outbox in this transaction (at the next flush/commit)."""
        self._events.append(outbox_values(envelope))

    async def flush(self) -> None:
        """Send pending entities and outbox rows to the database (still uncommitted)."""
        await self.session.flush()
        if self._events:
            # A plain multi-row INSERT without RETURNING: the API's database role needs
            # only INSERT on qa.outbox, never SELECT (least privilege).
            events, self._events = self._events, []
            await self.session.execute(insert(OutboxRow), events)

    async def commit(self) -> None:
        await self.flush()
        await self.session.commit()
        self._committed = True
