"""Compare the live broker with every subscriber's declaration (``qa-ops topology check``).

Pure: takes what :mod:`outbox.broker_api` read and the declarations, returns the
differences, each with how to fix it. Checked per subscriber: the exchange, its queue
(type, dead-letter target, delivery limit, counting a policy), its bindings (exactly its
event types), its dead-letter queue, each retry tier (TTL and dead-letter target back to
its queue), and the permissions of the process users that exist on the broker.

RabbitMQ never changes a queue's arguments after it exists. The delivery limit can be
LOWERED on a running queue by a policy (quorum queues take the smaller of argument and
policy); anything else needs the queue deleted (when empty) and declared again by
restarting its process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from outbox.broker_api import LiveBroker
from outbox.subscribers import Subscriber
from outbox.topology import (
    EVENTS_EXCHANGE,
    dead_queue_name,
    queue_name,
    retry_queue_arguments,
    retry_queue_name,
)


@dataclass(frozen=True)
class Difference:
    subscriber: str
    object: str  # "queue feed.events", "binding qa.events -> feed.events", "user qa_relay"
    problem: str
    expected: str
    actual: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _delivery_limit(queue: dict[str, Any], policies: Mapping[str, dict[str, Any]]) -> int | None:
    """The effective delivery limit: the smaller of the argument and the policy's."""
    limits = []
    arg = (queue.get("arguments") or {}).get("x-delivery-limit")
    if isinstance(arg, int):
        limits.append(arg)
    policy = policies.get(str(queue.get("policy") or ""), {})
    value = (policy.get("definition") or {}).get("delivery-limit")
    if isinstance(value, int):
        limits.append(value)
    return min(limits) if limits else None


class _Checker:
    def __init__(self, live: LiveBroker, out: list[Difference], group_size: int | None) -> None:
        self.live = live
        self.out = out
        self.group_size = group_size

    def diff(self, sub: str, obj: str, problem: str, exp: Any, act: Any, fix: str) -> None:
        self.out.append(Difference(sub, obj, problem, str(exp), str(act), fix))

    def queue(self, sub: str, name: str, qtype: str) -> dict[str, Any] | None:
        queue = self.live.queues.get(name)
        if queue is None:
            self.diff(
                sub,
                f"queue {name}",
                "missing",
                qtype,
                "absent",
                f"start `qa-consumer run {sub}` (it declares its queues)",
            )
            return None
        if queue.get("type") != qtype:
            self.diff(
                sub,
                f"queue {name}",
                "queue type",
                qtype,
                queue.get("type"),
                f"a queue's type cannot change: drain {name}, delete it "
                f"(`rabbitmqctl -p {self.live.vhost} delete_queue {name}`) and restart "
                f"`qa-consumer run {sub}`",
            )
        return queue

    def argument(self, sub: str, queue: dict[str, Any], key: str, expected: Any, fix: str) -> None:
        actual = (queue.get("arguments") or {}).get(key)
        if actual != expected:
            shown = "absent" if actual is None else repr(actual)
            self.diff(sub, f"queue {queue['name']}", f"argument {key}", repr(expected), shown, fix)

    def subscriber(self, sub: Subscriber, retry_delays: list[float], delivery_limit: int) -> None:
        name, vhost = sub.name, self.live.vhost
        recreate = (
            "delete the queue when it is empty "
            f"(`rabbitmqctl -p {vhost} delete_queue QUEUE`) and restart `qa-consumer run {name}`"
        )
        main = self.queue(name, queue_name(name), "quorum")
        if main is not None:
            again = recreate.replace("QUEUE", main["name"])
            self.argument(name, main, "x-dead-letter-exchange", "", again)
            self.argument(name, main, "x-dead-letter-routing-key", dead_queue_name(name), again)
            limit = _delivery_limit(main, self.live.policies)
            if limit != delivery_limit:
                pattern = "^" + re.escape(main["name"]) + "$"
                self.diff(
                    name,
                    f"queue {main['name']}",
                    "delivery limit",
                    delivery_limit,
                    limit,
                    f"to lower it: `rabbitmqctl -p {vhost} set_policy qa-{name}-delivery-limit "
                    f"'{pattern}' '{{\"delivery-limit\":{delivery_limit}}}' --apply-to queues` "
                    "(quorum queues take the smaller of argument and policy); to raise it: "
                    + again,
                )
            self.bindings(name, main["name"], set(sub.bindings))
        self.queue(name, dead_queue_name(name), "quorum")
        for delay in retry_delays:
            tier_name = retry_queue_name(name, delay)
            tier = self.queue(name, tier_name, "quorum")
            if tier is None:
                continue
            for key, value in retry_queue_arguments(name, delay, self.group_size).items():
                self.argument(name, tier, key, value, recreate.replace("QUEUE", tier_name))

    def bindings(self, sub: str, queue: str, expected: set[str]) -> None:
        actual = self.live.bindings.get((EVENTS_EXCHANGE, queue), set())
        v = self.live.vhost
        for key in sorted(expected - actual):
            self.diff(
                sub,
                f"binding {EVENTS_EXCHANGE} -> {queue}",
                "missing binding",
                key,
                "absent",
                f"restart `qa-consumer run {sub}` (it binds on start) or `rabbitmqadmin -V {v} "
                f"declare binding source={EVENTS_EXCHANGE} destination={queue} routing_key={key}`",
            )
        for key in sorted(actual - expected):
            self.diff(
                sub,
                f"binding {EVENTS_EXCHANGE} -> {queue}",
                "unexpected binding",
                "absent",
                key,
                f"the subscriber does not declare it: `rabbitmqadmin -V {v} delete binding "
                f"source={EVENTS_EXCHANGE} destination={queue} destination_type=queue "
                f"properties_key={key}` (a pattern key needs its URL-encoded properties_key)",
            )

    def exchange(self) -> None:
        exchange = self.live.exchanges.get(EVENTS_EXCHANGE)
        actual = None if exchange is None else (exchange.get("type"), exchange.get("durable"))
        if actual != ("topic", True):
            self.diff(
                "*",
                f"exchange {EVENTS_EXCHANGE}",
                "exchange",
                "topic, durable",
                "absent" if exchange is None else f"{actual[0]}, durable={actual[1]}",  # type: ignore[index]
                "start `qa-relay` or any subscriber (they declare it); a wrong type or "
                f"durability needs `rabbitmqctl -p {self.live.vhost} delete_exchange "
                f"{EVENTS_EXCHANGE}` first",
            )

    def permissions(self, users: Mapping[str, Mapping[str, Iterable[str]]]) -> None:
        for user, needs in users.items():
            granted = self.live.permissions.get(user)
            if granted is None:
                continue  # not a user of this deployment (the check covers those that exist)
            for kind, resources in needs.items():
                regex = granted.get(kind, "")
                missing = [r for r in resources if not (regex and re.search(regex, r))]
                if missing:
                    self.diff(
                        user,
                        f"user {user}",
                        f"{kind} permission",
                        ", ".join(missing),
                        regex or "(none)",
                        "grant it: see deploy/rabbitmq-users.sh "
                        f"(`rabbitmqctl -p {self.live.vhost} set_permissions {user} ...`)",
                    )


def process_users(
    subscribers: Mapping[str, Subscriber], retry_delays: list[float], users: Mapping[str, str]
) -> dict[str, dict[str, list[str]]]:
    """What each process user needs: ``users`` maps a role (``relay``, ``archiver`` or a
    subscriber's name) to the broker user running it."""
    needs: dict[str, dict[str, list[str]]] = {}
    if "relay" in users:
        needs[users["relay"]] = {
            "configure": [EVENTS_EXCHANGE],
            "write": [EVENTS_EXCHANGE, "amq.default"],
        }
    if "archiver" in users:
        dead = [dead_queue_name(n) for n in subscribers]
        needs[users["archiver"]] = {"configure": dead, "read": dead}
    for name in subscribers:
        if name not in users:
            continue
        own = [queue_name(name), dead_queue_name(name)]
        tiers = [retry_queue_name(name, d) for d in retry_delays]
        needs[users[name]] = {
            "configure": [EVENTS_EXCHANGE, *own, *tiers],
            "write": ["amq.default", queue_name(name)],
            "read": [EVENTS_EXCHANGE, queue_name(name)],
        }
    return needs


def check(
    live: LiveBroker,
    subscribers: Mapping[str, Subscriber],
    retry_delays: list[float],
    delivery_limit: int,
    users: Mapping[str, str],
    quorum_group_size: int | None = None,
) -> list[Difference]:
    """Every difference between ``live`` and the declarations (empty: they agree)."""
    out: list[Difference] = []
    checker = _Checker(live, out, quorum_group_size)
    checker.exchange()
    for sub in subscribers.values():
        checker.subscriber(sub, retry_delays, delivery_limit)
    checker.permissions(process_users(subscribers, retry_delays, users))
    return out
