"""PostgreSQL failover under load: the primary is SIGKILLed and its synchronous standby promoted.

Every answer and question that got a 201 must be in the feed exactly once, and the outbox
must have lost nothing (the checker compares the write side, the outbox, the feed inbox
and the client's ledger of 201s). Each process reconnects to the new primary by itself
through its multi-host URL with ``target_session_attrs=read-write``.
"""

from __future__ import annotations

import os
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
    # The replication link is cut before the kill: with synchronous replication, commits
    # simply wait (the API answers 503 or later), so nothing acknowledged can be lost.
    config = ScenarioConfig(
        faults=["pg_failover_lagging"], seed=SEED, poison=1, warmup=3.0, quiet_seconds=10.0
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


@pytest.mark.skipif(
    not os.environ.get("QA_CHAOS_FAILOVER_ASYNC"), reason="set QA_CHAOS_FAILOVER_ASYNC=1"
)
async def test_negative_control_asynchronous_replication_loses_acknowledged_writes(
    chaos_log_dir: Path,
) -> None:
    """The same run with asynchronous replication: the checker must see acknowledged
    writes vanish (answer and event together), or the synchronous run proves nothing."""
    servers = FailoverServers(synchronous=False)
    try:
        servers.start()
        config = ScenarioConfig(
            faults=["pg_failover_lagging"], seed=SEED, poison=0, warmup=3.0, quiet_seconds=10.0
        )
        report = await run_scenario(
            servers, chaos_log_dir, config, deployment=FailoverDeployment, injector=FailoverInjector
        )
    finally:
        servers.close()
    _publish(report, "PostgreSQL failover run, ASYNCHRONOUS replication (negative control)", config)
    assert report.acked_missing, report.render()
