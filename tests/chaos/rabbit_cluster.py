"""The chaos system on a real three-node RabbitMQ cluster, and the node faults it suffers.

:class:`ClusterChaosServers` is :class:`ChaosServers` with a
:class:`PrivateRabbitCluster` instead of one node: PostgreSQL links still go through
proxies, while every process gets ``QA_AMQP_URL`` naming all three nodes and picks its
own. Test code that talks to the broker directly (observer queue, poison messages)
uses whichever node is running.

Node faults: SIGKILL (or a graceful stop) of one node, which stays down for a few
seconds while the system must carry on with the other two, and is then started again on
its data directory (in the background: the recovery time of the fault is the time until
a new question reaches the feed, which should not wait for the node to come back). The
next node fault first waits until the previous node is back, so a majority is always up.

* ``node_kill_feed_leader`` - the node leading the ``feed.events`` quorum queue;
* ``node_kill_relay`` - the node the relay is connected to (publishes in flight);
* ``node_kill_consumer`` - the node the feed consumer is connected to;
* ``node_kill_random`` / ``node_stop_random`` - any node.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
from collections.abc import Callable

from tests.chaos.cluster import PG_LINKS, ChaosServers, Deployment
from tests.chaos.faults import Injector
from tests.support.private_pg import PrivatePostgres
from tests.support.private_rabbit import PrivateRabbit
from tests.support.private_rabbit_cluster import PrivateRabbitCluster
from tests.support.tcpproxy import TcpProxy

NODE_FAULTS = (
    "node_kill_feed_leader",
    "node_kill_relay",
    "node_kill_consumer",
    "node_kill_random",
    "node_stop_random",
)
GROUP_SIZE = 3


class _AnyNode:
    """What the shared chaos code calls ``servers.rabbit``: commands go to a running node."""

    def __init__(self, cluster: PrivateRabbitCluster) -> None:
        self.cluster = cluster

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.any_running().ctl(*args, check=check)

    def list_queues(self, vhost: str = "/") -> dict[str, dict[str, int]]:
        return self.cluster.any_running().list_queues(vhost)


class ClusterChaosServers(ChaosServers):
    def __init__(self) -> None:  # no single private node: a cluster instead
        self.pg = PrivatePostgres()
        self.cluster = PrivateRabbitCluster(3)
        self.rabbit = _AnyNode(self.cluster)  # type: ignore[assignment]
        self.proxies: dict[str, TcpProxy] = {}
        self.restarts: list[threading.Thread] = []

    def restart_later(self, node: PrivateRabbit, after: float) -> None:
        booting = self.cluster.booting

        def restart() -> None:
            time.sleep(after)
            booting.add(node.node)  # commands go to the other nodes until it is up
            try:
                node.start()
            finally:
                booting.discard(node.node)

        thread = threading.Thread(target=restart, name=f"restart {node.node}", daemon=True)
        thread.start()
        self.restarts.append(thread)

    def await_restarts(self) -> None:
        while self.restarts:
            self.restarts.pop().join()

    def start(self) -> ClusterChaosServers:
        self.pg.start()
        self.cluster.start()
        for link in PG_LINKS:
            self.proxies[link] = TcpProxy(self.pg.port)
            self.proxies[link].start()
        return self

    def heal(self) -> None:
        super().heal()
        self.await_restarts()
        for node in self.cluster.nodes:
            if not node.running:
                node.start()

    def close(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        self.cluster.destroy()
        self.pg.destroy()


class ClusterDeployment(Deployment):
    servers: ClusterChaosServers

    def amqp_url(self, link: str | None = None) -> str:
        if link is None:  # the test's own plain connections: one running node
            return self.servers.cluster.any_running().amqp_url(vhost=self.vhost)
        return self.servers.cluster.amqp_url(self.vhost)  # processes: every node

    def build_processes(self) -> None:
        super().build_processes()
        for proc in self.procs.values():
            proc.env["QA_QUORUM_INITIAL_GROUP_SIZE"] = str(GROUP_SIZE)


class ClusterInjector(Injector):
    def __init__(self, dep: Deployment, rng: random.Random) -> None:
        super().__init__(dep, rng)
        assert isinstance(dep, ClusterDeployment)
        self.cdep = dep
        self.cluster = dep.servers.cluster
        self.target: tuple[PrivateRabbit, str] | None = None
        self.pickers: dict[str, Callable[[], tuple[PrivateRabbit, str]]] = {
            "node_kill_feed_leader": self._feed_leader,
            "node_kill_relay": self._connected("qa-relay"),
            "node_kill_consumer": self._connected("qa-consumer-feed"),
            "node_kill_random": self._random,
            "node_stop_random": self._random,
        }
        for kind in self.pickers:
            self.kinds[kind] = self._node_fault(kill=kind.startswith("node_kill"))

    def prepare(self, kind: str) -> None:
        """Before the clock starts: the previous node is back, and this fault's node found."""
        self.target = None
        if kind in self.pickers:
            self.cdep.servers.await_restarts()
            self.target = self.pickers[kind]()

    def _feed_leader(self) -> tuple[PrivateRabbit, str]:
        leader = self.cluster.queue_leader("feed.events", self.cdep.vhost)
        if leader is None:
            raise AssertionError("feed.events has no leader before the fault")
        return leader, "leader of feed.events"

    def _connected(self, name: str) -> Callable[[], tuple[PrivateRabbit, str]]:
        def find() -> tuple[PrivateRabbit, str]:
            deadline = time.monotonic() + 30
            while (node := self.cluster.connection_node(self.cdep.vhost, name)) is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no connection named {name} on any node")
                time.sleep(0.5)
            return node, f"{name}'s node"

        return find

    def _random(self) -> tuple[PrivateRabbit, str]:
        return self.rng.choice(self.cluster.nodes), "random node"

    def _node_fault(self, kill: bool) -> Callable[[], str]:
        def inject() -> str:
            assert self.target is not None, "prepare() picks the node"
            node, why = self.target
            if kill:
                node.kill()
            else:
                node.stop()
            down = self.rng.uniform(3.0, 8.0)
            self.cdep.servers.restart_later(node, down)
            verb = "SIGKILL" if kill else "stop"
            return f"{verb} {node.node.split('@')[0]} ({why}), down {down:.1f}s"

        return inject


def fast_node_faults() -> list[str]:
    """CI: the node the relay publishes through dies (the full run adds the rest)."""
    return ["node_kill_relay"]


def full_node_faults(rng: random.Random, rounds: int = 3) -> list[str]:
    plan = [*NODE_FAULTS, "relay_kill", "feed_kill"] * rounds
    rng.shuffle(plan)
    return plan
