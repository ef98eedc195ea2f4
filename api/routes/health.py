"""``/healthz`` (the process is alive), ``/readyz`` (both databases answer), ``/metrics``."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.deps import MetricsDep
from api.errors import RETRY_AFTER_SECONDS

router = APIRouter(tags=["operations"])
log = logging.getLogger("qa.api")

READY_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves requests; touches no database."""
    return {"status": "ok"}


async def _reachable(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness check failed: %s", type(exc).__name__)
        return False
    return True


@router.get("/readyz", responses={503: {"description": "A database is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the write database and the feed database both answer ``SELECT 1``."""
    engines: dict[str, AsyncEngine] = request.app.state.engines
    results = await asyncio.gather(*(_reachable(engine) for engine in engines.values()))
    failed = [name for name, ok in zip(engines, results, strict=True) if not ok]
    if failed:
        return JSONResponse(
            {"status": "unavailable", "failed": failed},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return JSONResponse({"status": "ok", "checked": list(engines)})


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
