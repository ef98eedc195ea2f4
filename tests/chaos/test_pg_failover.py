"""PostgreSQL failover under load: the primary is SIGKILLed and its synchronous standby promoted.

Every answer and question that got a 201 must be in the feed exactly once, and the outbox
must have lost nothing (the checker compares the write side, the outbox, the feed inbox
and the client's ledger of 201s). Each process reconnects to the new primary by itself
through its multi-host URL with ``target_session_attrs=read-write``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.pg_failover import FailoverDeployment, FailoverInjector, FailoverServers
from tests.chaos.scenario import ScenarioConfig, run_scenario
from tests.chaos.test_chaos import SEED, _assert_clean, _publish


@pytest.fixture(scope="module")
def failover_servers() -> Iterator[FailoverServers]:
    servers = FailoverServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


async def test_failover_to_a_synchronous_standby_loses_no_acknowledged_write(
    failover_servers: FailoverServers, chaos_log_dir: Path
) -> None:
    config = ScenarioConfig(
        faults=["pg_failover"], seed=SEED, poison=1, warmup=3.0, quiet_seconds=10.0
    )
    report = await run_scenario(
        failover_servers,
        chaos_log_dir,
        config,
        deployment=FailoverDeployment,
        injector=FailoverInjector,
    )
    _publish(report, "PostgreSQL failover run", config)
    _assert_clean(report, config)
    assert report.client is not None and report.client.acked_answers, "no answer got a 201"
