"""QA_AMQP_URL with several RabbitMQ nodes: parsing, masking, and which node comes next."""

from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from outbox.amqp import ClusterConnection, redact_nodes, split_nodes
from outbox.settings import Settings, redact


def test_one_url_is_one_node() -> None:
    assert split_nodes("amqp://u:p@mq:5672/v") == ["amqp://u:p@mq:5672/v"]


def test_comma_separated_urls_are_nodes() -> None:
    url = "amqp://u:p@a:5672/v?heartbeat=5, amqps://u:p@b:5671/v"
    assert split_nodes(url) == ["amqp://u:p@a:5672/v?heartbeat=5", "amqps://u:p@b:5671/v"]


def test_one_url_with_several_hosts_shares_credentials_vhost_and_query() -> None:
    assert split_nodes("amqp://u:p@a:5672,b:5673,c/v?heartbeat=5") == [
        "amqp://u:p@a:5672/v?heartbeat=5",
        "amqp://u:p@b:5673/v?heartbeat=5",
        "amqp://u:p@c/v?heartbeat=5",
    ]


def test_a_password_with_a_comma_is_not_a_host_separator() -> None:
    assert split_nodes("amqp://u:p,w@a,b/") == ["amqp://u:p,w@a/", "amqp://u:p,w@b/"]


@pytest.mark.parametrize("bad", ["mq:5672", "amqp://u:p@a,,b/", "amqp://u:p@/"])
def test_malformed_node_lists_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        split_nodes(bad)


def test_every_password_is_masked() -> None:
    s = Settings(amqp_url="amqp://u:hunter2@a:5672,b:5673/v")
    shown = redact(s.amqp_url)
    assert "hunter2" not in shown
    assert shown == "amqp://u:***@a:5672/v,amqp://u:***@b:5673/v"
    assert "hunter2" not in redact_nodes("amqp://u:hunter2@a/,amqp://v:hunter2@b/")


def _connection(start: int = 0) -> ClusterConnection:
    nodes = [URL(f"amqp://u:secret@n{i}:5672/?reconnect_interval=0.5") for i in range(3)]
    return ClusterConnection(nodes, start=start)


def _attempt(conn: ClusterConnection) -> str:
    return str(conn.url.host)  # aio-pika reads url once per connection attempt


async def test_failed_attempts_go_round_the_nodes_and_then_back_off() -> None:
    conn = _connection(start=1)
    assert [_attempt(conn) for _ in range(4)] == ["n1", "n2", "n0", "n1"]
    # One full round failed: the pause doubles, and keeps doubling up to a cap.
    assert conn.reconnect_interval == 1.0
    for _ in range(30):
        _attempt(conn)
    assert conn.reconnect_interval == 10.0


async def test_a_lost_connection_moves_to_the_next_node() -> None:
    conn = _connection()
    assert _attempt(conn) == "n0"
    closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closing.set_exception(ConnectionError("node gone"))
    await conn._on_connection_close(closing)
    assert _attempt(conn) == "n1"


async def test_log_text_of_the_connection_masks_the_password() -> None:
    conn = _connection(start=2)
    assert "secret" not in str(conn)
    assert "n2" in str(conn)


def test_the_vhost_of_a_multi_node_url_is_every_nodes_vhost() -> None:
    from pydantic import SecretStr

    from console.broker import vhost_of

    assert vhost_of(SecretStr("amqp://u:p@a:5672,b:5673/my-vhost")) == "my-vhost"
    assert vhost_of(SecretStr("amqp://u:p@a:5672/,amqp://u:p@b:5673/")) == "/"
