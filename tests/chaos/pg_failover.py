"""The chaos system on a PostgreSQL primary with a synchronous streaming standby.

Every process gets a multi-host database URL::

    postgresql+psycopg://postgres@/DB?host=127.0.0.1:P1&host=127.0.0.1:P2
                                     &target_session_attrs=read-write   (one line)

libpq tries the hosts in order and keeps only a server that accepts writes, so after the
primary dies and the standby is promoted, every new connection lands on the new primary.
The broker is the machine's shared RabbitMQ (a private vhost; it is never restarted here).

Fault ``pg_failover``: SIGKILL the primary (postmaster and backends), then promote the
standby. ``pg_failover_lagging`` first cuts the replication link for a second or two
(the standby streams through a proxy), as a slow or broken link would. The old primary
is never started again (it would be a second writable server, and the first host of
every URL).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time

from tests.chaos.cluster import ChaosServers, Deployment
from tests.chaos.faults import Injector
from tests.support.private_pg import PrivatePostgres
from tests.support.private_pg_standby import PrivateStandby, make_synchronous
from tests.support.tcpproxy import TcpProxy

AMQP_BASE = os.environ.get("QA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


class _SharedBroker:
    """What the shared chaos code calls ``servers.rabbit``: the machine's own RabbitMQ."""

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", *args], check=check, capture_output=True, text=True, timeout=60
        )

    def list_queues(self, vhost: str = "/") -> dict[str, dict[str, int]]:
        out = self.ctl(
            "list_queues", "-p", vhost, "-q", "--formatter", "json", "name", "consumers", "messages"
        ).stdout
        return {
            row["name"]: {"consumers": int(row["consumers"]), "messages": int(row["messages"])}
            for row in json.loads(out or "[]")
        }


class FailoverServers(ChaosServers):
    """A primary and a standby streaming from it through a proxy (``replication``).

    ``synchronous=False`` leaves replication asynchronous: the negative control.
    """

    def __init__(self, synchronous: bool = True) -> None:
        self.synchronous = synchronous
        self.pg = PrivatePostgres()
        self.replication = TcpProxy(self.pg.port)
        self.standby = PrivateStandby(self.pg, via_port=self.replication.port)
        self.rabbit = _SharedBroker()  # type: ignore[assignment]
        self.proxies: dict[str, TcpProxy] = {}

    def start(self) -> FailoverServers:
        self.pg.start()
        self.replication.start()
        self.standby.start()
        if self.synchronous:
            make_synchronous(self.pg)
        return self

    def url(self, dbname: str) -> str:
        hosts = f"host=127.0.0.1:{self.pg.port}&host=127.0.0.1:{self.standby.port}"
        return f"postgresql+psycopg://postgres@/{dbname}?{hosts}&target_session_attrs=read-write"

    def close(self) -> None:
        self.standby.destroy()
        self.pg.destroy()
        self.replication.stop()


class FailoverDeployment(Deployment):
    servers: FailoverServers

    def db_url(self, link: str | None = None) -> str:
        return self.servers.url(self.dbname)

    def amqp_url(self, link: str | None = None) -> str:
        return f"{AMQP_BASE}/{self.vhost}"

    def stop(self) -> dict[str, int | None]:
        codes = super().stop()
        self.servers.rabbit.ctl("delete_vhost", self.vhost, check=False)
        return codes


class FailoverInjector(Injector):
    def __init__(self, dep: Deployment, rng: random.Random) -> None:
        super().__init__(dep, rng)
        assert isinstance(dep.servers, FailoverServers)
        servers = dep.servers
        self.kinds["pg_failover"] = lambda: self.failover(servers)
        self.kinds["pg_failover_lagging"] = lambda: self.failover(servers, lag=True)

    def failover(self, servers: FailoverServers, lag: bool = False) -> str:
        note = ""
        if lag:
            # The standby falls behind (a slow or cut replication link) while the primary
            # keeps committing; with asynchronous replication those commits are acked.
            servers.replication.block()
            window = self.rng.uniform(1.0, 2.0)
            time.sleep(window)
            note = f"replication cut {window:.1f}s before the kill, "
        servers.pg.kill()
        servers.replication.unblock()
        servers.standby.promote()
        return note + "SIGKILL primary, standby promoted"
