"""Database URLs with several hosts reach libpq intact (engines and raw relay connections)."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from outbox.db import libpq_dsn
from outbox.settings import redact

MULTI = (
    "postgresql+psycopg://qa:hunter2@/qa"
    "?host=pg1:5432&host=pg2:5433&target_session_attrs=read-write"
)


def test_multi_host_url_becomes_libpq_host_and_port_lists() -> None:
    params = conninfo_to_dict(libpq_dsn(MULTI))
    assert params["host"] == "pg1,pg2"
    assert params["port"] == "5432,5433"
    assert params["target_session_attrs"] == "read-write"
    assert (params["dbname"], params["user"], params["password"]) == ("qa", "qa", "hunter2")


def test_single_host_url_is_unchanged_in_meaning() -> None:
    params = conninfo_to_dict(libpq_dsn("postgresql+psycopg://u:p%40ss@db:6432/qa"))
    assert params == {"host": "db", "port": "6432", "dbname": "qa", "user": "u", "password": "p@ss"}


def test_multi_host_url_is_masked_in_logs() -> None:
    shown = redact(MULTI)
    assert "hunter2" not in shown
    assert "pg1" in shown and "pg2" in shown
