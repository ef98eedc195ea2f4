"""Queue figures from the RabbitMQ management HTTP API, grouped by subscriber.

A subscriber ``NAME`` owns ``NAME.events`` (its work queue), ``NAME.retry.<ms>ms`` (the
delayed-retry tiers) and ``NAME.dead`` (dead letters on their way to the archiver).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from yarl import URL

from outbox.amqp import first_node

TIMEOUT_SECONDS = 3.0
_RETRY = re.compile(r"^(?P<name>.+)\.retry\.(?P<ms>\d+)ms$")


@dataclass
class SubscriberQueues:
    name: str
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    retry_tiers: dict[int, int] = field(default_factory=dict)  # delay in ms -> messages

    def tiers(self) -> list[tuple[str, int]]:
        """("1s", depth) per retry tier, shortest delay first."""
        return [(f"{ms / 1000:g}s", n) for ms, n in sorted(self.retry_tiers.items())]

    dead_queue: int = 0


def vhost_of(amqp_url: SecretStr) -> str:
    path = first_node(amqp_url.get_secret_value()).path
    return path[1:] if len(path) > 1 else "/"


def _classify(queues: list[dict[str, Any]]) -> dict[str, SubscriberQueues]:
    subs: dict[str, SubscriberQueues] = {}
    for q in queues:
        name = str(q.get("name", ""))
        ready = int(q.get("messages_ready") or 0)
        if name.endswith(".events"):
            sub = subs.setdefault(name[: -len(".events")], SubscriberQueues(name[:-7]))
            sub.ready = ready
            sub.unacked = int(q.get("messages_unacknowledged") or 0)
            sub.consumers = int(q.get("consumers") or 0)
        elif (m := _RETRY.match(name)) is not None:
            sub = subs.setdefault(m.group("name"), SubscriberQueues(m.group("name")))
            sub.retry_tiers[int(m.group("ms"))] = int(q.get("messages") or 0)
        elif name.endswith(".dead"):
            sub = subs.setdefault(name[: -len(".dead")], SubscriberQueues(name[:-5]))
            sub.dead_queue = int(q.get("messages") or 0)
    return subs


async def subscriber_queues(
    client: httpx.AsyncClient, management_url: SecretStr, vhost: str
) -> dict[str, SubscriberQueues]:
    """Per-subscriber queue figures; raises httpx.HTTPError when the API cannot answer."""
    base = URL(management_url.get_secret_value())
    auth = (base.user or "guest", base.password or "guest")
    api = str(base.with_user(None).with_password(None)).rstrip("/")
    response = await client.get(
        f"{api}/api/queues/{quote(vhost, safe='')}",
        params={"columns": "name,messages,messages_ready,messages_unacknowledged,consumers"},
        auth=auth,
        timeout=TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    return _classify(response.json())
