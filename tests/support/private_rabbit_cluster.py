"""Three (or more) private RabbitMQ nodes joined into one cluster, for chaos tests.

Each node is a :class:`PrivateRabbit` (own node name, AMQP and distribution ports, data
directory); they share one Erlang cookie, and every node after the first runs
``rabbitmqctl stop_app; reset; join_cluster <first>; start_app``. A node that is
SIGKILLed and started again rejoins by itself (its data directory remembers the cluster).

    with PrivateRabbitCluster(3) as cluster:
        cluster.amqp_url(vhost="v")    # amqp://guest:guest@127.0.0.1:P1,127.0.0.1:P2,.../v
        cluster.nodes[1].kill(); cluster.nodes[1].start()
        cluster.queue_leader("feed.events", "v")   # the node leading a quorum queue
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor

from tests.support.private_rabbit import PrivateRabbit


class PrivateRabbitCluster:
    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateRabbit() for _ in range(size)]
        # Nodes being (re)started: their OS process runs but the broker may not be up yet.
        self.booting: set[str] = set()
        cookie = secrets.token_hex(16).upper()
        # Peer discovery from the config: the nodes form the cluster while they boot, no
        # stop_app/reset/join_cluster round (which costs a restart per node).
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{i} = {node.node}\n"
            for i, node in enumerate(self.nodes, 1)
        )
        for node in self.nodes:
            path = node.home / ".erlang.cookie"
            path.chmod(0o600)
            path.write_text(cookie)
            path.chmod(0o400)
            with (node.root / "rabbitmq.conf").open("a") as conf:
                conf.write("cluster_formation.peer_discovery_backend = classic_config\n" + peers)

    def __enter__(self) -> PrivateRabbitCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def start(self) -> None:
        """Boot every node (in parallel); they find each other and form one cluster."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.start(), self.nodes))
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise RuntimeError(f"cluster formed with {running} only")

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()

    def any_running(self) -> PrivateRabbit:
        for node in self.nodes:
            if node.running and node.node not in self.booting:
                return node
        raise RuntimeError("no cluster node is running")

    def amqp_url(self, vhost: str = "") -> str:
        """One URL naming every node (the form QA_AMQP_URL accepts)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"amqp://guest:guest@{hosts}/{vhost}"

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl`` on some running node (cluster-wide commands)."""
        return self.any_running().ctl(*args, timeout=timeout).stdout

    def running_nodes(self) -> list[str]:
        status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def by_name(self, name: str) -> PrivateRabbit:
        for node in self.nodes:
            if node.node == name:
                return node
        raise KeyError(name)

    def queue_leader(self, queue: str, vhost: str) -> PrivateRabbit | None:
        """The node leading a quorum queue now (None while it has no leader)."""
        rows = json.loads(
            self.ctl("list_queues", "-p", vhost, "-q", "--formatter", "json", "name", "leader")
            or "[]"
        )
        for row in rows:
            if row["name"] == queue and row.get("leader") not in (None, "", "undefined"):
                return self.by_name(row["leader"])
        return None

    def connection_node(self, vhost: str, connection_name: str) -> PrivateRabbit | None:
        """The node holding the client connection named ``connection_name`` in ``vhost``."""
        rows = json.loads(
            self.ctl(
                "list_connections",
                "-q",
                "--formatter",
                "json",
                "vhost",
                "port",
                "client_properties",
            )
            or "[]"
        )
        for row in rows:
            if row.get("vhost") == vhost and connection_name in json.dumps(
                row["client_properties"]
            ):
                # The server port tells the node apart: each node listens on its own.
                for node in self.nodes:
                    if node.port == int(row["port"]):
                        return node
        return None
