"""Prometheus metrics of the relay process (served on ``settings.relay_metrics_port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Outbox figures are measured by the leader only; a standby reports NaN ("not measured
# here"), never a stale value from an earlier term. Aggregate with max() across relays.
BACKLOG = Gauge("qa_relay_backlog_rows", "Outbox rows not yet published (leader only; NaN else).")
OLDEST_PENDING_AGE = Gauge(
    "qa_relay_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox row (leader only; NaN else).",
)
FAILING = Gauge(
    "qa_relay_failing_rows",
    "Unpublished rows the broker refused at least once (attempts > 0; leader only; NaN else).",
)
OUTBOX_GAUGES = (BACKLOG, OLDEST_PENDING_AGE, FAILING)


def forget_outbox_figures() -> None:
    """Leadership ended (or never began): this process no longer measures the outbox."""
    for gauge in OUTBOX_GAUGES:
        gauge.set(float("nan"))


forget_outbox_figures()
PUBLISHED = Counter("qa_relay_published", "Outbox rows confirmed by the broker and marked.")
FAILED = Counter(
    "qa_relay_failed",
    "Publish attempts that failed (nack, return, timeout, channel error).",
    ["reason"],
)
BATCH_DURATION = Histogram(
    "qa_relay_batch_duration_seconds",
    "Claim + publish + mark of one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "qa_relay_batch_rows", "Rows claimed per batch.", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
IS_LEADER = Gauge("qa_relay_is_leader", "1 while this process holds the relay advisory lock.")
PURGED = Counter("qa_relay_retention_deleted", "Published rows deleted by retention.")
BROKER_BLOCKED = Gauge(
    "qa_relay_broker_blocked",
    "1 while the broker blocks this relay's publishing connection (memory or disk alarm).",
)
CLAIMS = Counter("qa_relay_claims", "Claim queries run (empty ones included).")
SHARDS_LED = Gauge("qa_relay_shards_led", "Relay shards this process leads (QA_RELAY_SHARDS > 1).")
