"""Connections to a RabbitMQ cluster: one node at a time, the next one when it is lost.

``QA_AMQP_URL`` names one node or several, either as comma-separated URLs
(``amqp://u:p@a:5672/v,amqp://u:p@b:5672/v``) or as one URL with several hosts
(``amqp://u:p@a:5672,b:5672,c/v``). A process connects to one node; aio-pika's robust
connection (which knows a single URL, aio-pika issue #141) is taught to move on: every
(re)connection attempt after a failed attempt or a lost connection goes to the next
node, round robin, starting at a random node so processes spread over the cluster.
Once a full round of nodes failed, the pause between attempts doubles (up to
``MAX_BACKOFF_SECONDS``); a successful connection resets it. Channels, exchanges,
queues, bindings and consumers declared through the connection are re-declared on the
new node by aio-pika's own recovery, so each process resumes what it owns.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import aio_pika
from aio_pika import RobustConnection
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.connection import make_url
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

BASE_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
_NEXT_URL = re.compile(r",\s*(?=amqps?://)")


def split_nodes(url: str) -> list[str]:
    """One URL per node, from either multi-node form (see the module docstring)."""
    nodes: list[str] = []
    for piece in _NEXT_URL.split(url.strip()):
        scheme, sep, rest = piece.partition("://")
        if not sep:
            raise ValueError("an AMQP URL must start with amqp:// or amqps://")
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        userinfo, at, hosts = authority.rpartition("@")
        for host in hosts.split(","):
            if not host.strip():
                raise ValueError("an AMQP URL names an empty host")
            nodes.append(f"{scheme}://{userinfo}{at}{host.strip()}{tail}")
    return nodes


def redact_nodes(url: str) -> str:
    """The node list safe to log: every password masked."""
    out = []
    for node in split_nodes(url):
        parsed = URL(node)
        out.append(str(parsed.with_password("***")) if parsed.password else str(parsed))
    return ",".join(out)


class ClusterConnection(RobustConnection):
    """A robust connection that fails over between the nodes of a cluster.

    aio-pika reads ``self.url`` exactly once per connection attempt (in
    ``Connection.connect``), so that read is where the node is chosen: the property
    moves to the next node unless the previous attempt succeeded and its connection is
    still the one in use. ``__str__`` (used in aio-pika's log lines) shows the current
    node with its password masked and never moves.
    """

    def __init__(self, nodes: list[URL], start: int = 0, **kwargs: Any) -> None:
        if not nodes:
            raise ValueError("no RabbitMQ node given")
        self._nodes = nodes
        self._index = start % len(nodes)
        self._move_on = False
        self._failed_in_a_row = 0
        super().__init__(nodes[self._index], **kwargs)
        self._move_on = False  # the constructor's own read of self.url was not an attempt

    @property
    def url(self) -> URL:
        if self._move_on:
            self._index = (self._index + 1) % len(self._nodes)
            self._failed_in_a_row += 1
        # Until _on_connected says otherwise, this attempt counts as failed.
        self._move_on = True
        return self._nodes[self._index]

    @url.setter
    def url(self, value: URL) -> None:
        # aio-pika assigns the URL in __init__ and when a secret is updated: keep the
        # node list and carry a new password over to every node.
        if getattr(self, "_nodes", None) is None:
            return
        self._nodes = [node.with_password(value.password) for node in self._nodes]

    @property
    def node(self) -> URL:
        """The node this connection uses (or tries) now."""
        return self._nodes[self._index]

    @property
    def reconnect_interval(self) -> float:
        # A first round over the nodes goes at the base pace; then the pause doubles.
        rounds = self._failed_in_a_row // len(self._nodes)
        return float(min(self._base_interval * (2**rounds), MAX_BACKOFF_SECONDS))

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._base_interval = float(value)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        self._move_on = False
        self._failed_in_a_row = 0

    async def _on_connection_close(self, closing: Any) -> None:
        self._move_on = True  # the node went away (or restore failed): try the next one
        await super()._on_connection_close(closing)

    def __str__(self) -> str:
        node = self._nodes[self._index]
        return str(node.with_password("******")) if node.password else str(node)


async def connect_cluster(
    url: str,
    *,
    connect_timeout: float = 5.0,
    reconnect_interval: float = BASE_BACKOFF_SECONDS,
    name: str | None = None,
    rng: random.Random | None = None,
) -> ClusterConnection:
    """Connect to the first node (from a random start) that answers; the connection then
    fails over by itself. Raises the last connection error when no node answers."""
    nodes = split_nodes(url)
    query: dict[str, Any] = {"reconnect_interval": reconnect_interval}
    if name:
        query["name"] = name
    urls = [make_url(node, **query) for node in nodes]
    start = (rng or random).randrange(len(urls))
    last: BaseException | None = None
    for step in range(len(urls)):
        connection = ClusterConnection(urls, start=start + step)
        try:
            await connection.connect(timeout=connect_timeout)
        except CONNECTION_EXCEPTIONS as exc:
            last = exc
            await connection.close()
            continue
        return connection
    assert last is not None
    raise last


async def connect_first(url: str, *, connect_timeout: float = 10.0) -> AbstractConnection:
    """A plain (not robust) connection to the first node that answers, in the given
    order: for one-shot tools (``qa-ops``) that do not outlive a node."""
    last: BaseException | None = None
    for node in split_nodes(url):
        try:
            return await aio_pika.connect(node, timeout=connect_timeout)
        except CONNECTION_EXCEPTIONS as exc:
            last = exc
    assert last is not None
    raise last


def first_node(url: str) -> URL:
    """The first node's URL (its vhost and credentials are every node's)."""
    return URL(split_nodes(url)[0])


def _underlay(connection: AbstractRobustConnection) -> Any | None:
    transport = getattr(connection, "transport", None)
    return getattr(transport, "connection", None)


async def is_blocked(connection: AbstractRobustConnection, wait: float = 0.05) -> bool:
    """True while the broker blocks this (connected) connection's publishers: a memory or
    disk alarm (``connection.blocked``; RabbitMQ blocks a connection when it next
    publishes during the alarm). Waits up to ``wait`` seconds for ``connection.unblocked``.

    aiormq tracks the state (its ``Connection.ready()`` waits for both "connected" and
    "unblocked") but exposes no flag; a connected connection whose ``ready()`` does not
    complete at once is blocked. A disconnected link is not "blocked".
    """
    amqp = _underlay(connection)
    if amqp is None or not amqp.connected.is_set():
        return False
    try:
        async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancellation
            await amqp.ready()
    except TimeoutError:
        return bool(amqp.connected.is_set())
    return False
