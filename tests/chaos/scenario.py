"""One chaos run: start the system, load it, inject faults one after another, quiesce, check.

Each fault is followed by a recovery probe: a new question posted through the API and
awaited in the feed; the time from the fault's start until it shows is the fault's
recovery time. After a broker restart the scenario also records how many consumers
``feed.events`` and ``feed.dead`` have (a robust connection that comes back without its
consumer is a known aio-pika failure and would show 0 here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
from sqlalchemy import text

from tests.chaos.checker import ClientLedger, Report, check
from tests.chaos.cluster import ChaosServers, Deployment
from tests.chaos.faults import BROKER_FAULTS, FaultRecord, Injector
from tests.chaos.load import LoadGenerator, slow_writer
from tests.chaos.notifier_check import check_notifier

log = logging.getLogger("chaos")
WATCHED_QUEUES = ("feed.events", "feed.dead", "notifier.events")


@dataclass
class ScenarioConfig:
    faults: list[str]
    seed: int = 0
    workers: int = 4
    slow_writers: int = 2
    poison: int = 3
    warmup: float = 2.0
    gap: tuple[float, float] = (0.5, 2.0)
    recovery_timeout: float = 90.0
    quiesce_timeout: float = 360.0
    quiet_seconds: float = 15.0
    relay: str = "real"
    notes: list[str] = field(default_factory=list)


async def run_scenario(
    servers: ChaosServers,
    log_dir: Path,
    config: ScenarioConfig,
    deployment: type[Deployment] = Deployment,
    injector: type[Injector] = Injector,
) -> Report:
    rng = random.Random(config.seed)
    dep = deployment(servers, log_dir, relay=config.relay)
    await asyncio.to_thread(dep.start)
    try:
        return await _drive(dep, config, rng, injector)
    finally:
        servers.heal()
        await asyncio.to_thread(dep.stop)


async def _drive(
    dep: Deployment, config: ScenarioConfig, rng: random.Random, injector_cls: type[Injector]
) -> Report:
    assert dep.engine is not None
    ledger = ClientLedger()
    load = LoadGenerator(
        dep.api, dep.token, ledger, rng, workers=config.workers, answer_token=dep.answer_token
    )
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = [asyncio.create_task(load.run(stop))]
    tasks += [
        asyncio.create_task(slow_writer(dep.db_url(), stop, random.Random(rng.random())))
        for _ in range(config.slow_writers)
    ]
    poison_ids = await _inject_poison(dep, config.poison)
    injector = injector_cls(dep, rng)
    records: list[FaultRecord] = []
    try:
        await asyncio.sleep(config.warmup)
        for kind in config.faults:
            await asyncio.sleep(rng.uniform(*config.gap))
            await asyncio.to_thread(injector.prepare, kind)
            record = FaultRecord(kind, at=time.monotonic() - started)
            t0 = time.monotonic()
            record.note = await asyncio.to_thread(injector.inject, kind)
            record.duration = time.monotonic() - t0
            record.self_exits = await asyncio.to_thread(_revive, dep)
            record.recovery_seconds = await _recovery(dep, load, t0, config.recovery_timeout)
            if kind in BROKER_FAULTS:
                record.consumers_after = await _consumers(dep)
            records.append(record)
            log.warning("chaos: %s", record.describe())
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    dep.servers.heal()
    await asyncio.to_thread(_revive, dep)
    await _quiesce(dep, config)
    delivered = await dep.drain_observer()
    report = check(
        dep.engine, delivered=delivered, poison_ids=poison_ids, client=ledger, faults=records
    )
    report.notifier = check_notifier(dep.engine, dep.smtp.mails)
    return report


def _revive(dep: Deployment) -> list[str]:
    """Like a supervisor: restart processes that exited on their own. Returns their names."""
    exited = [f"{n}({p.returncode})" for n, p in dep.procs.items() if not p.alive]
    dep.ensure_running()
    return exited


async def _recovery(
    dep: Deployment, load: LoadGenerator, t0: float, patience: float
) -> float | None:
    qid = await load.probe(patience=patience)
    if qid is None:
        return None
    deadline = t0 + patience
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_in_feed, dep, qid):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


def _in_feed(dep: Deployment, qid: str) -> bool:
    assert dep.engine is not None
    try:
        with dep.engine.connect() as conn:
            row = conn.execute(
                text("SELECT title FROM feed.questions WHERE question_id = CAST(:q AS uuid)"),
                {"q": qid},
            ).first()
    except Exception:  # the database may be restarting
        return False
    return row is not None and row[0] is not None


async def _consumers(dep: Deployment) -> dict[str, int]:
    # Give a reconnecting consumer a moment: a count of 0 must mean "never came back".
    deadline = time.monotonic() + 15
    while True:
        queues = await asyncio.to_thread(dep.servers.rabbit.list_queues, dep.vhost)
        counts = {q: queues.get(q, {}).get("consumers", 0) for q in WATCHED_QUEUES}
        if min(counts.values()) >= 1 or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1.0)


async def _inject_poison(dep: Deployment, count: int) -> set[str]:
    """Undecodable messages straight into qa.events: they must be dead-lettered once."""
    ids = {f"poison-{random.getrandbits(48):012x}" for _ in range(count)}
    if not ids:
        return ids
    conn = await aio_pika.connect(dep.amqp_url())
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("qa.events")
        for mid in ids:
            message = aio_pika.Message(
                b'{"not": "an envelope"',
                message_id=mid,
                type="question.created",
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key="question.created", mandatory=True)
    return ids


async def _quiesce(dep: Deployment, config: ScenarioConfig) -> None:
    """Wait until everything committed is applied, or nothing moves for a while."""
    deadline = time.monotonic() + config.quiesce_timeout
    last: tuple[int, ...] | None = None
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            state = await asyncio.to_thread(_progress, dep)
            if state[0] == 0 and state[1] == 0 and state[4] == 0:
                return
            backoff = state[3]
            # A row waiting out the relay's backoff is not stuck: wait for its retry.
            if state != last or backoff > 0:
                last, last_change = state, time.monotonic()
            elif time.monotonic() - last_change > config.quiet_seconds:
                log.warning("chaos: no progress for %ss, checking as is", config.quiet_seconds)
                return
        await asyncio.sleep(0.5)


def _progress(dep: Deployment) -> tuple[int, ...]:
    """(pending rows, events the feed has not applied, inbox size, seconds to the last
    backoff, answers the notifier has neither handled nor dead-lettered)."""
    assert dep.engine is not None
    with dep.engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM qa.outbox WHERE published_at IS NULL")
        ).scalar_one()
        unapplied = conn.execute(
            text(
                "SELECT count(*) FROM qa.outbox o WHERE o.event_type IN"
                " ('question.created', 'answer.created') AND NOT EXISTS"
                " (SELECT 1 FROM subscribers.inbox i"
                " WHERE i.subscriber = 'feed' AND i.event_id = o.event_id)"
            )
        ).scalar_one()
        inbox = conn.execute(text("SELECT count(*) FROM subscribers.inbox")).scalar_one()
        backoff = conn.execute(
            text(
                "SELECT coalesce(extract(epoch FROM max(next_attempt_at) - now()), 0) "
                "FROM qa.outbox WHERE published_at IS NULL"
            )
        ).scalar_one()
        unnotified = conn.execute(
            text(
                "SELECT count(*) FROM qa.outbox o WHERE o.event_type = 'answer.created'"
                " AND NOT EXISTS (SELECT 1 FROM subscribers.inbox i"
                " WHERE i.subscriber = 'notifier' AND i.event_id = o.event_id)"
                " AND NOT EXISTS (SELECT 1 FROM subscribers.dead_letters d"
                " WHERE d.message_id = o.event_id::text)"
            )
        ).scalar_one()
    return (
        int(pending),
        int(unapplied),
        int(inbox),
        max(0, math.ceil(backoff)),
        int(unnotified),
    )
