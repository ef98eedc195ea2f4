"""Prometheus metrics of every subscriber, each series labelled ``subscriber="<name>"``.

Defined once here for all subscribers (one process runs one subscriber, but the labels
keep dashboards and alerts generic). Metric objects live in the default registry
(defining them connects to nothing); the HTTP server is started by the entrypoint.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

S = ("subscriber",)

RECEIVED = Counter(
    "qa_subscriber_messages_received_total", "Messages delivered to the subscriber.", S
)
APPLIED = Counter(
    "qa_subscriber_events_applied_total",
    "Events applied (projection committed, or side effect performed and recorded).",
    [*S, "event_type"],
)
DUPLICATES = Counter(
    "qa_subscriber_duplicates_skipped_total",
    "Deliveries of events the inbox had already recorded.",
    S,
)
RETRIED = Counter(
    "qa_subscriber_retried_total", "Messages sent to a delayed-retry tier.", [*S, "error_class"]
)
DEAD_LETTERED = Counter(
    "qa_subscriber_dead_lettered_total",
    "Messages published to <subscriber>.dead.",
    [*S, "error_class", "disposition"],
)
QUICK_RETRIES = Counter(
    "qa_subscriber_quick_retries_total",
    "In-process retries of a batch transaction after a transient error.",
    S,
)
DIVERT_FAILURES = Counter(
    "qa_subscriber_divert_failures_total",
    "Retry or dead-letter publishes that failed (the original was requeued, not acked).",
    S,
)
INBOX_DELETED = Counter(
    "qa_subscriber_inbox_deleted_total",
    "Inbox rows deleted by retention (older than QA_INBOX_RETENTION_SECONDS).",
    S,
)
BATCH_SIZE = Histogram(
    "qa_subscriber_batch_size",
    "Messages per batch.",
    S,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_SECONDS = Histogram(
    "qa_subscriber_batch_duration_seconds",
    "Time to apply, settle and ack one batch.",
    S,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_TO_APPLIED = Histogram(
    "qa_subscriber_commit_to_applied_seconds",
    "From the event's occurred_at (its outbox commit) to the subscriber's commit.",
    S,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def serve(port: int) -> Any | None:
    """Start the /metrics server on ``port`` (0: disabled). Returns the server to shut down."""
    if port == 0:
        return None
    server, _thread = start_http_server(port)
    return server
