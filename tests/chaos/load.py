"""Realistic load for the chaos run: HTTP posts with client retries, and slow transactions.

:class:`LoadGenerator` posts questions and answers through the real API. A request that
fails with a connection error, a timeout or a 5xx is retried with the same
``Idempotency-Key`` (what a well-behaved client does), so a retry must never create a
second row. Every logical request has a unique title or body, which lets the checker
count duplicate writes.

:func:`slow_writer` commits questions through the same unit of work as the API but holds
each transaction open for a while, so rows with low outbox ids commit after rows with
higher ids were published: the case an ``id > last_id`` relay silently skips.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from outbox.db import make_async_engine
from outbox.events import QuestionCreatedV1, new_envelope
from outbox.models import Question
from outbox.uow import UnitOfWork
from tests.chaos.checker import ClientLedger

RETRYABLE = {408, 409, 425, 429}


class LoadGenerator:
    """Concurrent workers posting questions (30%) and answers (70%) until stopped."""

    def __init__(
        self,
        base: str,
        token: str,
        ledger: ClientLedger,
        rng: random.Random,
        workers: int = 4,
        answer_token: str | None = None,
    ) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {token}"}
        # Answers by another user than the questions' author owe the author a mail.
        self.answer_auth = {"Authorization": f"Bearer {answer_token or token}"}
        self.ledger = ledger
        self.rng = rng
        self.workers = workers
        self.questions: list[str] = []

    async def run(self, stop: asyncio.Event, pause: float = 0.02) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            await asyncio.gather(*(self._worker(client, stop, pause) for _ in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, stop: asyncio.Event, pause: float) -> None:
        while not stop.is_set():
            if not self.questions or self.rng.random() < 0.3:
                await self.post_question(client)
            else:
                await self.post_answer(client, self.rng.choice(self.questions))
            await asyncio.sleep(pause)

    async def post_question(
        self, client: httpx.AsyncClient, subject: str = "chaos", patience: float = 60.0
    ) -> str | None:
        key = uuid.uuid4().hex
        payload = {
            "title": f"q {key}",
            "body": "chaos question",
            "subject": subject,
            "grade": self.rng.randint(1, 12),
        }
        body = await self._post(client, "/questions", payload, key, patience)
        if body is None:
            return None
        qid = str(body["id"])
        self.ledger.acked_questions.add(qid)
        self.questions.append(qid)
        return qid

    async def post_answer(self, client: httpx.AsyncClient, question_id: str) -> str | None:
        key = uuid.uuid4().hex
        body = await self._post(
            client,
            f"/questions/{question_id}/answers",
            {"body": f"a {key}"},
            key,
            60.0,
            auth=self.answer_auth,
        )
        if body is None:
            return None
        self.ledger.acked_answers.add(str(body["id"]))
        return str(body["id"])

    async def probe(self, patience: float = 120.0) -> str | None:
        """One question that marks "now": used to time recovery after a fault."""
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await self.post_question(client, subject="probe", patience=patience)

    async def _post(
        self,
        client: httpx.AsyncClient,
        path: str,
        payload: dict[str, Any],
        key: str,
        patience: float,
        auth: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        ledger = self.ledger
        ledger.requests += 1
        ledger.keys.add(key)
        headers = {**(auth or self.auth), "Idempotency-Key": key}
        deadline = time.monotonic() + patience
        attempt = 0
        while True:
            status: int | None = None
            try:
                response = await client.post(path, json=payload, headers=headers)
                status = response.status_code
                ledger.statuses[str(status)] += 1
                if status == 201:
                    return dict(response.json())
            except httpx.HTTPError as exc:
                ledger.statuses[type(exc).__name__] += 1
            if status is not None and status < 500 and status not in RETRYABLE:
                return None  # a client error is final; the checker sees it in statuses
            if time.monotonic() > deadline:
                ledger.gave_up += 1
                return None
            ledger.retries += 1
            attempt += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + self.rng.random()))


async def slow_writer(
    db_url: str, stop: asyncio.Event, rng: random.Random, hold: tuple[float, float] = (0.5, 2.0)
) -> int:
    """Commit questions in transactions held open for ``hold`` seconds. Returns commits."""
    engine = make_async_engine(db_url, application_name="chaos-slow-writer")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    committed = 0
    try:
        while not stop.is_set():
            qid = uuid.uuid4()
            now = datetime.now(UTC)
            title = f"slow {qid.hex}"
            try:
                async with UnitOfWork(sessions) as uow:
                    uow.add(
                        Question(
                            id=qid,
                            title=title,
                            body="slow",
                            subject="slow",
                            grade=5,
                            author="chaos",
                            created_at=now,
                        )
                    )
                    await uow.flush()
                    data = QuestionCreatedV1(
                        question_id=qid,
                        title=title,
                        subject="slow",
                        grade=5,
                        author="chaos",
                        created_at=now,
                    )
                    uow.add_event(new_envelope("question.created", "question", qid, data))
                    await uow.flush()
                    # The outbox id is taken now; other rows get higher ids and commit first.
                    await asyncio.sleep(rng.uniform(*hold))
                    await uow.commit()
                committed += 1
            except Exception:  # a database restart mid-transaction is expected here
                await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return committed
