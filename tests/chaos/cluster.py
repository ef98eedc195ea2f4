"""The system under test for the chaos suite: private servers, fault proxies, real processes.

:class:`ChaosServers` (one per test session) owns a private PostgreSQL cluster, a private
RabbitMQ node and one :class:`TcpProxy` per link::

    api -> PG            api_pg
    relay -> PG / AMQP   relay_pg, relay_amqp
    feed -> PG / AMQP    feed_pg, feed_amqp
    archiver -> PG/AMQP  archiver_pg, archiver_amqp
    notifier -> PG/AMQP  notifier_pg, notifier_amqp

:class:`Deployment` (one per scenario) gets a fresh database and vhost on those servers,
migrates it, creates an API token and an observer queue, and runs the console scripts
with URLs that go through the proxies. The notifier mails a scenario-private SMTP server
(aiosmtpd in this process); two registered users write the load (questions by ``chaos``,
answers by ``chaos-b``), so every answer owes ``chaos`` a mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections import Counter
from pathlib import Path

import aio_pika
from sqlalchemy import Engine, insert

from outbox.db import make_engine
from outbox.migrate import ensure_database, upgrade
from outbox.models import ApiToken
from outbox.tokens import hash_token, new_token
from outbox.topology import declare_exchange
from outbox.users import create as create_user
from tests.support.private_pg import PrivatePostgres
from tests.support.private_rabbit import PrivateRabbit
from tests.support.procs import ManagedProcess, api_base, spawn
from tests.support.smtp_server import TestSmtpServer
from tests.support.tcpproxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
PG_LINKS = ("api_pg", "relay_pg", "feed_pg", "archiver_pg", "notifier_pg")
AMQP_LINKS = ("relay_amqp", "feed_amqp", "archiver_amqp", "notifier_amqp")
OBSERVER_QUEUE = "chaos.observer"

# Long retention: the checker needs every event ever committed still in qa.outbox.
RUN_ENV = {
    "QA_RELAY_RETENTION_SECONDS": str(7 * 24 * 3600),
    "QA_RELAY_POLL_INTERVAL_SECONDS": "0.5",
    "QA_RELAY_PUBLISH_TIMEOUT_SECONDS": "5",
    "QA_STARTUP_TIMEOUT_SECONDS": "90",
    "QA_RETRY_DELAYS": "0.2,0.5,1,2,4",
}


class ChaosServers:
    """Private PostgreSQL + RabbitMQ + one proxy per link. Start once, share per session."""

    def __init__(self) -> None:
        self.pg = PrivatePostgres()
        self.rabbit = PrivateRabbit()
        self.proxies: dict[str, TcpProxy] = {}

    def start(self) -> ChaosServers:
        self.pg.start()
        self.rabbit.start()
        for link in PG_LINKS:
            self.proxies[link] = TcpProxy(self.pg.port)
        for link in AMQP_LINKS:
            self.proxies[link] = TcpProxy(self.rabbit.port)
        for proxy in self.proxies.values():
            proxy.start()
        return self

    def heal(self) -> None:
        """Undo every proxy fault (blocks, latency)."""
        for proxy in self.proxies.values():
            proxy.unblock()
            proxy.set_latency(0.0)

    def close(self) -> None:
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        self.rabbit.destroy()
        self.pg.destroy()


class Deployment:
    """One scenario's database, vhost and processes on the shared private servers."""

    def __init__(self, servers: ChaosServers, log_dir: Path, relay: str = "real") -> None:
        self.servers = servers
        self.tag = secrets.token_hex(4)
        self.dbname = f"chaos_{self.tag}"
        self.vhost = f"chaos-{self.tag}"
        self.log_dir = log_dir
        self.relay_kind = relay
        self.token = ""
        self.answer_token = ""
        self.smtp = TestSmtpServer()
        self.engine: Engine | None = None
        self.procs: dict[str, ManagedProcess] = {}

    # -- addresses -------------------------------------------------------------------

    def db_url(self, link: str | None = None) -> str:
        port = self.servers.proxies[link].port if link else None
        return self.servers.pg.url(self.dbname, port=port)

    def amqp_url(self, link: str | None = None) -> str:
        port = self.servers.proxies[link].port if link else None
        return self.servers.rabbit.amqp_url(port=port, vhost=self.vhost)

    @property
    def api(self) -> str:
        return api_base(self.procs["api"])

    # -- set-up ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Database, migrations, token, vhost, exchange and observer queue."""
        ensure_database(self.db_url())
        upgrade(self.db_url())
        self.engine = make_engine(self.db_url())
        self.token = new_token()
        self.answer_token = new_token()
        with self.engine.begin() as conn:
            for user, secret in (("chaos", self.token), ("chaos-b", self.answer_token)):
                conn.execute(insert(ApiToken).values(user_name=user, token_hash=hash_token(secret)))
                # user.registered events: the relay publishes them once it runs
                create_user(conn, user, f"{user}@example.test")
        self.smtp.start()
        rabbit = self.servers.rabbit
        rabbit.ctl("add_vhost", self.vhost)
        rabbit.ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        asyncio.run(self._declare_observer())

    async def _declare_observer(self) -> None:
        # A quorum queue: the relay's confirm then covers it too, so it survives node kills.
        conn = await aio_pika.connect(self.amqp_url())
        async with conn:
            channel = await conn.channel()
            exchange = await declare_exchange(channel)
            queue = await channel.declare_queue(
                OBSERVER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(exchange, routing_key="#")

    def build_processes(self) -> None:
        def env(pg_link: str | None, amqp_link: str | None) -> dict[str, str]:
            out = dict(RUN_ENV)
            if pg_link:
                out["QA_DATABASE_URL"] = self.db_url(pg_link)
            if amqp_link:
                out["QA_AMQP_URL"] = self.amqp_url(amqp_link)
            return out

        logs = self.log_dir
        self.procs["api"] = spawn("api", logs, env("api_pg", None))
        relay_env = env("relay_pg", "relay_amqp")
        if self.relay_kind == "broken":
            relay_env["PYTHONPATH"] = str(ROOT)
            self.procs["relay"] = spawn(
                "relay",
                logs,
                relay_env,
                argv=[sys.executable, "-m", "tests.chaos.broken_relay"],
            )
        else:
            self.procs["relay"] = spawn("relay", logs, relay_env)
        self.procs["feed"] = spawn("feed", logs, env("feed_pg", "feed_amqp"))
        self.procs["dead-letters"] = spawn(
            "dead-letters", logs, env("archiver_pg", "archiver_amqp")
        )
        notifier_env = {**env("notifier_pg", "notifier_amqp"), "QA_SMTP_URL": self.smtp.url}
        self.procs["notifier"] = spawn("notifier", logs, notifier_env)

    def start(self) -> None:
        self.prepare()
        self.build_processes()
        # The consumer declares the topology the relay's mandatory publishes need.
        for name in ("feed", "notifier", "dead-letters", "relay", "api"):
            self.procs[name].start()

    def ensure_running(self) -> None:
        """Start any process that is down (after a fault or a crash of its own)."""
        for proc in self.procs.values():
            if not proc.alive:
                proc.start()

    def stop(self) -> dict[str, int | None]:
        codes = {name: proc.terminate() for name, proc in self.procs.items()}
        self.smtp.stop()
        if self.engine is not None:
            self.engine.dispose()
        return codes

    # -- observations ------------------------------------------------------------------

    async def drain_observer(self) -> Counter[str]:
        """Message ids the observer queue received (each copy counted), emptying it."""
        seen: Counter[str] = Counter()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen[message.message_id or "<none>"] += 1

        conn = await aio_pika.connect(self.amqp_url())
        async with conn:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=1000)
            queue = await channel.get_queue(OBSERVER_QUEUE)
            await queue.consume(on_message, no_ack=True)
            last = -1
            while sum(seen.values()) != last:
                last = sum(seen.values())
                await asyncio.sleep(1.0)
        return seen
