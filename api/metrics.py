"""Prometheus metrics of the API (request counts and latency by route template and status)
and the access log line written from the same measurement.

Each app gets its own registry (several apps can live in one test process). Routes are
labelled by template (``/questions/{question_id}``), never by raw path, so label
cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
access_log = logging.getLogger("qa.api.access")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "qa_api_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qa_api_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.events = Counter(
            "qa_api_outbox_events",
            "Events written to the outbox, by type.",
            ["type"],
            registry=self.registry,
        )


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Responses made before routing (413 by Content-Length): match the template here.
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED


class MetricsMiddleware:
    """Counts and times every request; with ``access_log`` also writes its access log line."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        routes: list[BaseRoute],
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.access_log = access_log
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "OTHER"
            route = route_template(scope, self.routes)
            elapsed = time.perf_counter() - start
            counter, histogram = self._series(method, route, status)
            counter.inc()
            histogram.observe(elapsed)
            if self.access_log:
                log_access(method, route, status, elapsed)

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The labelled counter and histogram of a request kind, looked up once per kind
        (``labels()`` validates and locks on every call). Bounded: methods, route
        templates and status codes are finite."""
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            series = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.latency.labels(method, route),
            )
            self._children[key] = series
        return series


def log_access(method: str, route: str, status: int, elapsed: float) -> None:
    """The access log line: route template (never the raw path or query), no headers or body.

    The request id comes from the log context bound by the request-id middleware.
    """
    duration_ms = round(elapsed * 1000, 3)
    access_log.info(
        "%s %s %d %.1fms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "fields": {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
            }
        },
    )
