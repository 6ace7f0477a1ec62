"""Agent loops: active health checks of http/a2a agents, and upkeep of the
per-agent metrics (bucket retention, load gauges). Every replica runs both."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy import select

from ymera.agents import health_checks
from ymera.agents import metrics as agent_metrics
from ymera.agents.health_checks import EjectionPolicy, ProbeResult, Target, Verdict
from ymera.kit.ids import new_id
from ymera.models.agents import Agent
from ymera.monitoring.metrics import Metrics
from ymera.state import AppState

log = structlog.get_logger("ymera.agents.health")

PROBE_BATCH = 500  # agents claimed per pass
PROBE_CONCURRENCY = 32  # probes in flight per replica
METRICS_REFRESH_SECONDS = 15.0  # load gauges
PRUNE_EVERY_SECONDS = 600.0


@dataclass(frozen=True)
class ProbeOutcome:
    agent_id: str
    ok: bool
    error: str | None
    verdict: Verdict | None  # None: the lease was lost or the agent is gone


def _owner(state: AppState) -> str:
    replica = state.extras.get("replica_id")
    if replica:
        return str(replica)
    return str(state.extras.setdefault("agent_probe_owner", new_id()))


async def probe_once(
    state: AppState, *, client: httpx.AsyncClient | None = None, owner: str | None = None
) -> list[ProbeOutcome]:
    """Probe every http/a2a agent that is due (up to a batch) and apply the outcomes.

    Leases each agent first, probes outside any transaction, then applies each
    result in its own transaction. The background loop calls this on a timer;
    tests call it directly. ``owner`` names the lease holder (default: this replica).
    """
    cfg = state.settings.agents
    owner = owner or _owner(state)
    now = state.clock.now()
    async with state.db.transaction(readonly=True) as session:
        due = await health_checks.due_agents(session, now=now, limit=PROBE_BATCH)
    if not due:
        return []
    async with state.db.transaction() as session:
        targets = await health_checks.claim(
            session,
            due=due,
            owner=owner,
            now=now,
            lease_seconds=2 * cfg.health_check_timeout + 5,
        )
    if not targets:
        return []
    if client is None:
        async with httpx.AsyncClient(follow_redirects=True) as own:
            results = await _probe_all(own, targets, cfg.health_check_timeout)
    else:
        results = await _probe_all(client, targets, cfg.health_check_timeout)
    return await _apply_all(state, owner, targets, results)


async def _probe_all(
    client: httpx.AsyncClient, targets: list[Target], timeout: float
) -> list[ProbeResult]:
    limit = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(target: Target) -> ProbeResult:
        async with limit:
            return await health_checks.probe(client, target, timeout=timeout)

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def _apply_all(
    state: AppState, owner: str, targets: list[Target], results: list[ProbeResult]
) -> list[ProbeOutcome]:
    cfg = state.settings.agents
    policy = EjectionPolicy.from_settings(cfg)
    metrics: Metrics | None = state.extras.get("metrics")
    outcomes: list[ProbeOutcome] = []
    for target, result in zip(targets, results, strict=True):
        verdict: Verdict | None = None
        try:
            async with state.db.transaction() as session:
                verdict = await health_checks.apply_result(
                    session,
                    target=target,
                    result=result,
                    owner=owner,
                    now=state.clock.now(),
                    policy=policy,
                    interval=cfg.health_check_interval,
                )
        except Exception as exc:  # one agent's trouble must not stop the others
            log.warning("health_check_apply_failed", agent_id=target.agent_id, error=repr(exc))
        outcomes.append(ProbeOutcome(target.agent_id, result.ok, result.error, verdict))
        if metrics is not None:
            metrics.agent_health_checks.labels("ok" if result.ok else "failed").inc()
            if verdict == Verdict.EJECTED:
                metrics.agent_ejections.inc()
        if verdict in (Verdict.EJECTED, Verdict.READMITTED):
            log.info(f"agent_{verdict.value}", agent_id=target.agent_id, error=result.error)
    return outcomes


async def agent_probe_loop(state: AppState, stop: asyncio.Event) -> None:
    """Probe http/a2a agents as they fall due (each every ``health_check_interval``)."""
    cfg = state.settings.agents
    if not cfg.health_check_enabled:
        return
    tick = min(1.0, cfg.health_check_interval)
    async with httpx.AsyncClient(follow_redirects=True) as client:
        while not stop.is_set():
            try:
                await probe_once(state, client=client)
            except Exception as exc:
                log.warning("health_checks_failed", error=repr(exc))
            await _wait(stop, tick)


def bind_agent_series(state: AppState) -> agent_metrics.AgentSeries | None:
    """Route recorded outcomes to this app's Prometheus registry (once per app)."""
    metrics: Metrics | None = state.extras.get("metrics")
    if metrics is None:
        return None
    series = agent_metrics.series_of(state.db)
    if series is None:
        series = agent_metrics.AgentSeries(
            metrics, max_labels=state.settings.agents.metrics_max_agent_labels
        )
        agent_metrics.bind_series(state.db, series)
    return series


async def refresh_load_gauges(state: AppState) -> None:
    series = bind_agent_series(state)
    if series is None:
        return
    async with state.db.transaction(readonly=True) as session:
        rows = (await session.execute(select(Agent.id, Agent.name, Agent.current_load))).all()
    series.set_loads([(str(i), str(name), int(load)) for i, name, load in rows])


async def prune_metrics_once(state: AppState) -> int:
    """Delete expired and orphaned metric buckets; how many were deleted."""
    cfg = state.settings.agents
    total = 0
    while True:
        async with state.db.transaction() as session:
            deleted = await agent_metrics.prune_buckets(
                session,
                now=state.clock.now(),
                minute_retention_hours=cfg.metrics_minute_retention_hours,
                hour_retention_days=cfg.metrics_hour_retention_days,
                limit=5000,
            )
        total += deleted
        if deleted < 5000:
            return total


async def agent_metrics_loop(state: AppState, stop: asyncio.Event) -> None:
    """Keep the load gauges fresh and prune old metric buckets."""
    bind_agent_series(state)
    since_prune = PRUNE_EVERY_SECONDS
    while not stop.is_set():
        try:
            await refresh_load_gauges(state)
            if since_prune >= PRUNE_EVERY_SECONDS:
                since_prune = 0.0
                pruned = await prune_metrics_once(state)
                if pruned:
                    log.info("agent_metrics_pruned", count=pruned)
        except Exception as exc:
            log.warning("agent_metrics_upkeep_failed", error=repr(exc))
        await _wait(stop, METRICS_REFRESH_SECONDS)
        since_prune += METRICS_REFRESH_SECONDS


async def _wait(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
