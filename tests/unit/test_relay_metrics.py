"""Relay gauges: a relay that is not (or no longer) the leader reports no outbox figures."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import REGISTRY

from outbox.settings import Settings
from relay import metrics
from relay.relay import Relay


def sample(name: str) -> Any:
    return REGISTRY.get_sample_value(name)


def test_losing_leadership_forgets_the_backlog_figures() -> None:
    relay = Relay(Settings(), amqp=object())  # type: ignore[arg-type]
    relay._set_leader(True)
    metrics.BACKLOG.set(42)
    metrics.OLDEST_PENDING_AGE.set(120.0)
    metrics.FAILING.set(3)
    assert sample("qa_relay_backlog_rows") == 42
    relay._set_leader(False)
    assert sample("qa_relay_is_leader") == 0
    for name in (
        "qa_relay_backlog_rows",
        "qa_relay_oldest_pending_age_seconds",
        "qa_relay_failing_rows",
    ):
        assert math.isnan(sample(name)), name
