"""Liveness, readiness and Prometheus metrics (public, unauthenticated)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ymera import __version__
from ymera.db import migrate
from ymera.errors import PROBLEM_JSON, ShuttingDown
from ymera.middleware import is_draining
from ymera.monitoring.metrics import Metrics
from ymera.state import State

router = APIRouter(tags=["monitoring"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers. Checks nothing else."""
    return {"status": "ok", "version": __version__}


async def _check(coro: Any, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        result = await asyncio.wait_for(coro, timeout)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:200]
    if result is False:
        return False, "unreachable"
    return True, "ok"


@router.get(
    "/readyz",
    responses={
        503: {"description": "Not ready", "content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}
    },
)
async def readyz(request: Request, state: State) -> JSONResponse:
    """Ready: the database answers, migrations are at head, and the bus is reachable.
    Once shutdown has begun: 503 `shutting_down`, so load balancers stop routing here."""
    if is_draining(request.app):
        raise ShuttingDown()
    db_ok, db_msg = await _check(state.db.ping())
    mig_ok, mig_msg = await _check(migrate.is_at_head(state.db))
    if mig_ok is False and mig_msg == "unreachable":
        mig_msg = "database is not at the newest migration; run `ymera db upgrade`"
    bus_ok, bus_msg = await _check(state.bus.ping())
    checks = {
        "database": db_msg,
        "migrations": mig_msg,
        "bus": f"{state.bus.name}: {bus_msg}",
    }
    if db_ok and mig_ok and bus_ok:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {
            "type": "urn:ymera:problem:not_ready",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            "code": "not_ready",
            "checks": checks,
        },
        status_code=503,
        media_type=PROBLEM_JSON,
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    m: Metrics = request.app.state.metrics
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
