"""Prometheus metrics of the feed consumer, served on ``settings.consumer_metrics_port``.

Metric objects live in the default registry (defining them connects to nothing); the
HTTP server is started by the entrypoint, never at import time.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

RECEIVED = Counter("qa_feed_messages_received_total", "Messages delivered to the feed consumer.")
APPLIED = Counter(
    "qa_feed_events_applied_total", "Events applied to the feed read model.", ["event_type"]
)
DUPLICATES = Counter(
    "qa_feed_duplicates_skipped_total", "Deliveries of events the inbox had already applied."
)
RETRIED = Counter(
    "qa_feed_retried_total", "Messages sent to a delayed-retry tier.", ["error_class"]
)
DEAD_LETTERED = Counter(
    "qa_feed_dead_lettered_total",
    "Messages published to feed.dead.",
    ["error_class", "disposition"],
)
QUICK_RETRIES = Counter(
    "qa_feed_quick_retries_total", "In-process retries of a batch after a transient error."
)
DIVERT_FAILURES = Counter(
    "qa_feed_divert_failures_total",
    "Retry or dead-letter publishes that failed (the original was requeued, not acked).",
)
BATCH_SIZE = Histogram(
    "qa_feed_batch_size",
    "Messages per batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS = Histogram(
    "qa_feed_batch_duration_seconds",
    "Time to apply, settle and ack one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_TO_APPLIED = Histogram(
    "qa_feed_commit_to_applied_seconds",
    "From the event's occurred_at (its outbox commit) to the feed transaction's commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def serve(port: int) -> Any | None:
    """Start the /metrics server on ``port`` (0: disabled). Returns the server to shut down."""
    if port == 0:
        return None
    server, _thread = start_http_server(port)
    return server
