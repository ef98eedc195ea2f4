"""``qa-ops topology check`` against a real broker (management API), each test in a private
vhost: a matching topology passes; a drifted one (missing binding, classic queue where a
quorum one is declared, retry tier without dead-letter exchange, a changed delivery limit,
a process user without a permission) exits 1 naming each difference and its fix. A
subscriber whose queue arguments drifted still starts (it uses the queue as it is)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner
from yarl import URL

from consumers.feed import SUBSCRIBER as FEED
from ops.cli import app
from outbox.settings import Settings
from outbox.subscribers import discover
from outbox.topology import (
    EVENTS_EXCHANGE,
    declare_exchange,
    declare_subscriber,
    retry_queue_arguments,
    retry_queue_name,
)

AMQP = os.environ.get("QA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
MANAGEMENT = os.environ.get("QA_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672/")
DELAYS = [1.0, 5.0]


def _api(method: str, path: str, body: dict[str, Any] | None = None) -> None:
    """The management API (faster than rabbitmqctl, which boots a VM per call)."""
    base = URL(MANAGEMENT)
    response = httpx.request(
        method,
        str(base.with_user(None).with_password(None)).rstrip("/") + "/api" + path,
        json=body,
        auth=(base.user or "guest", base.password or "guest"),
        timeout=30,
    )
    response.raise_for_status()


def _permit(vhost: str, user: str, configure: str, write: str, read: str) -> None:
    body = {"configure": configure, "write": write, "read": read}
    _api("PUT", f"/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}", body)


@pytest.fixture
def vhost(services: dict[str, str]) -> Iterator[str]:
    name = f"qa-topology-{uuid.uuid4().hex[:8]}"
    _api("PUT", f"/vhosts/{name}")
    _permit(name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        _api("DELETE", f"/vhosts/{name}")


def _settings(vhost: str, **extra: Any) -> Settings:
    return Settings(amqp_url=f"{AMQP}/{vhost}", retry_delays=DELAYS, **extra)


def run_check(vhost: str, *args: str, delivery_limit: int = 20) -> Result:
    """``qa-ops topology check`` in-process (a subprocess per call costs seconds)."""
    env = {
        "QA_AMQP_URL": f"{AMQP}/{vhost}",
        "QA_RABBITMQ_MANAGEMENT_URL": MANAGEMENT,
        "QA_RETRY_DELAYS": ",".join(f"{d:g}" for d in DELAYS),
        "QA_DELIVERY_LIMIT": str(delivery_limit),
    }
    return CliRunner().invoke(app, ["topology", "check", *args], env=env)


async def _declare(settings: Settings, delivery_limit: int = 20) -> tuple[str, ...]:
    """Declare every registered subscriber, as each one's start-up does; the queues whose
    arguments drifted."""
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    drifted: list[str] = []
    async with connection:
        channel = await connection.channel()
        for subscriber in discover().values():
            topology = await declare_subscriber(
                connection,
                channel,
                subscriber.name,
                subscriber.bindings,
                DELAYS,
                delivery_limit,
                subscriber.retired_bindings,
            )
            drifted += topology.drifted
    return tuple(drifted)


def _differences(result: Result) -> list[dict[str, str]]:
    payload = json.loads(result.stdout)
    assert payload["ok"] is (result.exit_code == 0)
    return list(payload["differences"])


async def test_declared_topology_passes_and_retired_bindings_go(vhost: str) -> None:
    assert await _declare(_settings(vhost)) == ()
    # The feed's binding from before the subscriber runtime, left on an upgraded broker.
    connection = await aio_pika.connect_robust(f"{AMQP}/{vhost}")
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(FEED.queue)
        await queue.bind(EVENTS_EXCHANGE, routing_key="question.*")
    [extra] = _differences(run_check(vhost, "--json"))
    assert (extra["problem"], extra["actual"]) == ("unexpected binding", "question.*")
    assert await _declare(_settings(vhost)) == ()  # the next start unbinds it
    result = run_check(vhost, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert _differences(result) == []
    human = run_check(vhost)
    assert human.exit_code == 0 and "matches" in human.stdout


async def test_drifted_broker_is_reported_with_fixes(vhost: str) -> None:
    connection = await aio_pika.connect_robust(f"{AMQP}/{vhost}")
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel)
        # Classic where quorum is declared, bound to one of its two event types only.
        queue = await channel.declare_queue("feed.events", durable=True)
        await queue.bind(exchange, routing_key="question.created")
        await channel.declare_queue("feed.dead", durable=True, arguments={"x-queue-type": "quorum"})
        # A retry tier without its dead-letter exchange: retried messages would vanish.
        broken = {"x-message-ttl": round(DELAYS[0] * 1000)}
        await channel.declare_queue(
            retry_queue_name("feed", DELAYS[0]), durable=True, arguments=broken
        )
        ok_tier = retry_queue_name("feed", DELAYS[1])
        await channel.declare_queue(
            ok_tier, durable=True, arguments=retry_queue_arguments("feed", DELAYS[1])
        )
    result = run_check(vhost, "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    found = {(d["object"], d["problem"], d["expected"]) for d in _differences(result)}
    assert ("queue feed.events", "queue type", "quorum") in found
    assert (
        f"binding {EVENTS_EXCHANGE} -> feed.events",
        "missing binding",
        "answer.created",
    ) in found
    assert ("queue feed.retry.1000ms", "argument x-dead-letter-exchange", "''") in found
    assert not any(obj == f"queue {ok_tier}" for obj, _, _ in found)
    human = run_check(vhost)
    assert human.exit_code == 1
    assert "missing binding" in human.stdout and "fix:" in human.stdout
    assert "delete_queue feed.events" in human.stdout


async def test_changed_delivery_limit_is_detected_and_does_not_stop_the_subscriber(
    vhost: str,
) -> None:
    assert await _declare(_settings(vhost), delivery_limit=20) == ()
    # Redeclared with another limit: used as it is instead of failing to start.
    queues = tuple(s.queue for s in discover().values())
    assert FEED.queue in queues
    assert await _declare(_settings(vhost), delivery_limit=30) == queues
    result = run_check(vhost, "--json", delivery_limit=30)
    assert result.exit_code == 1
    differences = _differences(result)
    assert len(differences) == len(queues)  # one per subscriber queue
    for difference in differences:
        assert (difference["problem"], difference["expected"], difference["actual"]) == (
            "delivery limit",
            "30",
            "20",
        )
        assert "set_policy" in difference["fix"]


async def test_process_user_without_a_permission_is_reported(vhost: str) -> None:
    assert await _declare(_settings(vhost)) == ()
    relay = f"qa-topology-relay-{uuid.uuid4().hex[:6]}"
    _api("PUT", f"/users/{relay}", {"password": uuid.uuid4().hex, "tags": ""})
    try:
        # May declare qa.events but not publish to the default exchange (replays).
        _permit(vhost, relay, r"^qa\.events$", r"^qa\.events$", "^$")
        result = run_check(vhost, "--json", "--user", f"relay={relay}")
    finally:
        _api("DELETE", f"/users/{relay}")
    assert result.exit_code == 1
    [difference] = _differences(result)
    assert difference["object"] == f"user {relay}"
    assert (difference["problem"], difference["expected"]) == ("write permission", "amq.default")
