"""Fault injection: every kind of fault the chaos run uses, and how each one is recorded.

A fault is injected synchronously (run it in a thread from async code) and leaves the
system able to recover: a killed process is started again, a stopped server is started
again, a blocked proxy is unblocked. Recovery itself (time until a new question reaches
the feed) is measured by the scenario, not here.

The relay's crash points (``relay/crashpoints.py``) are hit exactly by
``relay_crash_<point>``: the relay is restarted with ``QA_TEST_HOOKS=1``,
``QA_RELAY_CRASH_POINT=<point>`` and a random ``QA_RELAY_CRASH_AFTER`` (1-20 batches), it
exits 137 at that point under load, and a normal relay is started again. The older
``relay_kill_confirm_stall`` / ``relay_kill_mark_stall`` kinds stay: they are real
SIGKILLs from outside at a random moment while the broker (resp. database) link is
slowed down, so a batch spends most of its life in that window.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.cluster import AMQP_LINKS, PG_LINKS, Deployment

BROKER_FAULTS = {"rabbit_stop", "rabbit_kill"}
# Cluster node faults (tests/chaos/rabbit_cluster.py) are broker faults too.
BROKER_FAULTS |= {f"node_{kind}" for kind in ("kill_feed_leader", "kill_relay", "kill_consumer")}
BROKER_FAULTS |= {"node_kill_random", "node_stop_random"}
CRASH_POINTS = ("after_claim", "after_publish", "after_confirm")
CRASH_KINDS = tuple(f"relay_crash_{point}" for point in CRASH_POINTS)
# How long a crash-point relay may take to reach its point under load before the
# fault counts as not injected (it is SIGKILLed then, and the report says so).
CRASH_PATIENCE_SECONDS = 60.0
NOT_REACHED = "CRASH POINT NOT REACHED"


@dataclass
class FaultRecord:
    kind: str
    at: float
    duration: float = 0.0
    recovery_seconds: float | None = None
    consumers_after: dict[str, int] | None = None
    note: str = ""
    self_exits: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rec = "NOT RECOVERED" if self.recovery_seconds is None else f"{self.recovery_seconds:5.1f}s"
        text = f"t={self.at:6.1f}s {self.kind:<26} recovered {rec}"
        if self.consumers_after is not None:
            text += f"  consumers {self.consumers_after}"
        if self.self_exits:
            text += f"  exited on their own: {self.self_exits}"
        if self.note:
            text += f"  ({self.note})"
        return text


class Injector:
    """Knows how to inject each fault kind into one deployment."""

    def __init__(self, dep: Deployment, rng: random.Random) -> None:
        self.dep = dep
        self.rng = rng
        self.servers = dep.servers
        self.kinds: dict[str, Callable[[], str]] = {
            "relay_kill": self.relay_kill,
            "relay_kill_confirm_stall": self.relay_kill_confirm_stall,
            "relay_kill_mark_stall": self.relay_kill_mark_stall,
            "feed_kill": lambda: self._kill_restart("feed"),
            "archiver_kill": lambda: self._kill_restart("dead-letters"),
            "notifier_kill": lambda: self._kill_restart("notifier"),
            "smtp_outage": self.smtp_outage,
            "api_kill": lambda: self._kill_restart("api"),
            "rabbit_stop": self.rabbit_stop,
            "rabbit_kill": self.rabbit_kill,
            "pg_immediate": self.pg_immediate,
            "pg_kill": self.pg_kill,
        }
        for point in CRASH_POINTS:
            self.kinds[f"relay_crash_{point}"] = self._crasher(point)
        for link in (*PG_LINKS, *AMQP_LINKS):
            self.kinds[f"cut_{link}"] = self._cutter(link)
            self.kinds[f"block_{link}"] = self._blocker(link)

    def prepare(self, kind: str) -> None:
        """Work before ``kind`` that must not count into its recovery time (e.g. finding
        which node to kill). Nothing by default."""

    def inject(self, kind: str) -> str:
        """Inject ``kind``; returns a short note on what exactly happened."""
        return self.kinds[kind]()

    # -- processes -----------------------------------------------------------------

    def _kill_restart(self, name: str, down: tuple[float, float] = (0.0, 1.0)) -> str:
        proc = self.dep.procs[name]
        proc.kill()
        time.sleep(self.rng.uniform(*down))
        proc.start()
        return f"pid {proc.pid}"

    def relay_kill(self) -> str:
        return self._kill_restart("relay")

    def _stall_then_kill(self, link: str, latency: float) -> str:
        proxy = self.servers.proxies[link]
        proxy.set_latency(latency)
        window = self.rng.uniform(0.2, 2.0)
        time.sleep(window)
        self.dep.procs["relay"].kill()
        proxy.set_latency(0.0)
        self.dep.procs["relay"].start()
        return f"{link} delayed {latency:g}s per chunk, kill after {window:.1f}s"

    def relay_kill_confirm_stall(self) -> str:
        """Publishes reach the broker, confirms crawl back: kill while waiting on them."""
        return self._stall_then_kill("relay_amqp", self.rng.uniform(0.3, 1.0))

    def relay_kill_mark_stall(self) -> str:
        """Confirms arrive, the UPDATE that marks rows crawls: kill while waiting on it."""
        return self._stall_then_kill("relay_pg", self.rng.uniform(0.2, 0.6))

    def _crasher(self, point: str) -> Callable[[], str]:
        return lambda: self.relay_crash(point)

    def relay_crash(self, point: str) -> str:
        """Restart the relay armed at ``point``; it exits 137 there; start a normal one."""
        proc = self.dep.procs["relay"]
        after = self.rng.randint(1, 20)
        proc.kill()
        normal_env = dict(proc.env)
        proc.env.update(
            {
                "QA_TEST_HOOKS": "1",
                "QA_RELAY_CRASH_POINT": point,
                "QA_RELAY_CRASH_AFTER": str(after),
            }
        )
        try:
            proc.start(wait=False)
            deadline = time.monotonic() + CRASH_PATIENCE_SECONDS
            while proc.alive and time.monotonic() < deadline:
                time.sleep(0.05)
            code = proc.returncode
            proc.kill()  # a no-op unless the point was never reached
        finally:
            proc.env = normal_env
        proc.start()
        if code != 137:
            return f"{NOT_REACHED}: exit {code} (batch {after})"
        return f"exit 137 at {point} on batch {after}"

    # -- servers ---------------------------------------------------------------------

    def smtp_outage(self) -> str:
        """The notifier's SMTP server goes away and comes back on the same port."""
        self.dep.smtp.stop()
        outage = self.rng.uniform(0.5, 3.0)
        time.sleep(outage)
        self.dep.smtp.start()
        return f"SMTP down {outage:.1f}s"

    def rabbit_stop(self) -> str:
        self.servers.rabbit.stop()
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.servers.rabbit.start()
        return "graceful"

    def rabbit_kill(self) -> str:
        self.servers.rabbit.kill()
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.servers.rabbit.start()
        return "SIGKILL beam"

    def pg_immediate(self) -> str:
        self.servers.pg.restart(mode="immediate")
        return "pg_ctl -m immediate"

    def pg_kill(self) -> str:
        self.servers.pg.kill()
        time.sleep(self.rng.uniform(0.0, 1.0))
        self.servers.pg.start()
        return "SIGKILL postmaster and backends"

    # -- links -----------------------------------------------------------------------

    def _cutter(self, link: str) -> Callable[[], str]:
        def cut() -> str:
            self.servers.proxies[link].cut()
            return "RST on every connection"

        return cut

    def _blocker(self, link: str) -> Callable[[], str]:
        def block() -> str:
            proxy = self.servers.proxies[link]
            proxy.block()
            outage = self.rng.uniform(1.0, 4.0)
            time.sleep(outage)
            proxy.unblock()
            return f"down {outage:.1f}s"

        return block


FAST_FAULTS = [
    "relay_kill",
    "feed_kill",
    "relay_crash_after_claim",
    "cut_relay_amqp",
    "relay_crash_after_publish",
    "pg_immediate",
    "cut_feed_amqp",
    "relay_crash_after_confirm",
    "rabbit_stop",
    "cut_api_pg",
    "cut_relay_pg",
    "cut_feed_pg",
    "rabbit_kill",
    "relay_kill",
    "notifier_kill",
]


def full_faults(rng: random.Random, rounds: int = 3) -> list[str]:
    """Every fault kind ``rounds`` times, with extra random relay kills, shuffled."""
    kinds = [
        "relay_kill",
        "relay_kill_confirm_stall",
        "relay_kill_mark_stall",
        *CRASH_KINDS,
        "feed_kill",
        "archiver_kill",
        "notifier_kill",
        "smtp_outage",
        "api_kill",
        "rabbit_stop",
        "rabbit_kill",
        "pg_immediate",
        "pg_kill",
        *(f"cut_{link}" for link in (*PG_LINKS, *AMQP_LINKS)),
        "block_relay_amqp",
        "block_feed_pg",
        "block_api_pg",
    ]
    plan = kinds * rounds + ["relay_kill"] * (2 * rounds)
    rng.shuffle(plan)
    return plan
