"""The checker can fail: the same scenario with a relay that uses an ``id > last_id`` mark.

If this test ever passes with ``lost == 0``, the checker (or the slow-transaction load)
has gone blind, and the clean chaos reports prove nothing.
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos.cluster import ChaosServers
from tests.chaos.scenario import ScenarioConfig, run_scenario


async def test_checker_reports_losses_of_a_high_water_mark_relay(
    chaos_servers: ChaosServers, chaos_log_dir: Path
) -> None:
    config = ScenarioConfig(
        faults=["relay_kill", "cut_feed_amqp"],
        seed=7,
        relay="broken",
        slow_writers=3,
        poison=0,
        warmup=4.0,
        quiet_seconds=5.0,
        recovery_timeout=30.0,
    )
    report = await run_scenario(chaos_servers, chaos_log_dir, config)
    print("\nnegative control (broken relay)\n" + report.render())
    assert report.lost > 0, report.render()
    assert any(p.startswith("lost") for p in report.problems())
    # Lost rows are exactly the slow transactions' rows the high-water mark skipped.
    assert report.duplicates_applied == 0
