"""Guarantee 8 on a real three-node RabbitMQ cluster: nodes SIGKILLed and restarted under load.

The fast run (every CI run) kills the node the relay is connected to. The full run::

    QA_CHAOS_CLUSTER_FULL=1 .venv/bin/pytest tests/chaos/test_rabbit_cluster.py -k full -s

kills the node leading ``feed.events``, the relay's node, the feed consumer's node and
random nodes (SIGKILL and graceful stop) several times in a shuffled order, with process
kills in between (see docs/RELIABILITY.md). QA_CHAOS_SEED replays a schedule and
QA_CHAOS_REPORT=path appends the report to a file.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.rabbit_cluster import (
    ClusterChaosServers,
    ClusterDeployment,
    ClusterInjector,
    fast_node_faults,
    full_node_faults,
)
from tests.chaos.scenario import ScenarioConfig, run_scenario
from tests.chaos.test_chaos import SEED, _assert_clean, _publish


@pytest.fixture(scope="module")
def cluster_servers() -> Iterator[ClusterChaosServers]:
    servers = ClusterChaosServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


async def _run(servers: ClusterChaosServers, log_dir: Path, config: ScenarioConfig) -> None:
    report = await run_scenario(
        servers, log_dir, config, deployment=ClusterDeployment, injector=ClusterInjector
    )
    _publish(report, f"RabbitMQ cluster chaos run, {len(config.faults)} faults", config)
    _assert_clean(report, config)


async def test_cluster_node_kills_lose_nothing_and_apply_nothing_twice(
    cluster_servers: ClusterChaosServers, chaos_log_dir: Path
) -> None:
    config = ScenarioConfig(
        faults=fast_node_faults(), seed=SEED, poison=2, warmup=1.0, quiet_seconds=10.0
    )
    await _run(cluster_servers, chaos_log_dir, config)


@pytest.mark.skipif(not os.environ.get("QA_CHAOS_CLUSTER_FULL"), reason="QA_CHAOS_CLUSTER_FULL=1")
async def test_full_cluster_chaos_run_loses_nothing_and_applies_nothing_twice(
    cluster_servers: ClusterChaosServers, chaos_log_dir: Path
) -> None:
    rounds = int(os.environ.get("QA_CHAOS_ROUNDS", "3"))
    config = ScenarioConfig(
        faults=full_node_faults(random.Random(SEED), rounds), seed=SEED, gap=(0.2, 3.0)
    )
    await _run(cluster_servers, chaos_log_dir, config)
