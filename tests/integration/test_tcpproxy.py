"""The fault-injection proxy really forwards, cuts and blocks (so tests using it can fail)."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.tcpproxy import TcpProxy


def test_proxy_forwards_then_cut_breaks_the_connection() -> None:
    with TcpProxy(5432) as proxy:
        dsn = f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres connect_timeout=3"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.cut()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        proxy.block()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn)
        proxy.unblock()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
