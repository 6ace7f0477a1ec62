"""Active health checks and Envoy-style outlier ejection of http and a2a agents.

A probe is ``GET <endpoint_url>/health`` for http agents (any 2xx is healthy)
and ``GET <endpoint_url>/.well-known/agent-card.json`` for a2a agents (a 200
with a JSON object is healthy), within a timeout. Outcomes feed an
:class:`~ymera.resilience.breaker.OutlierEjector` rebuilt from the agent's
``agent_health`` row:

- ``ejection_consecutive_failures`` failures in a row eject the agent for
  ``base x times-ejected`` seconds (capped at ``ejection_max_seconds``): a live
  agent goes to ERROR with a reason starting with :data:`EJECTION_REASON`, and an
  ``agent.ejected`` event is recorded (an OFFLINE agent that answers goes to
  ERROR too; one that does not answer stays OFFLINE).
- An ejected agent is still probed every interval, for liveness only; the probe
  at the moment the ejection runs out decides: a success re-admits it
  (``agent.readmitted``; back to IDLE/ACTIVE/BUSY by load), a failure ejects it
  again, for longer.
- A probe the agent answers at all (even with a 500) is a heartbeat
  (``last_heartbeat_at``): the agent is reachable, so the silence monitor does
  not turn an ejected (ERROR) agent OFFLINE; an agent that does not answer goes
  OFFLINE after the heartbeat timeout, as any silent agent. A successful probe
  brings an OFFLINE agent online.
- While the agent stays healthy the multiplier decays by one per
  ``ejection_base_seconds``, as in Envoy.

Several replicas probe safely: an agent is *leased* (conditional update of its
row) before it is probed, and a result is applied only by the lease holder.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import and_, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.agents.status import AgentStatus, load_status
from ymera.config import AgentSettings
from ymera.events.outbox import record_event
from ymera.models.agent_metrics import AgentHealth
from ymera.models.agents import Agent
from ymera.resilience.breaker import OutlierEjector

S = AgentStatus
PROBED_MODES = ("http", "a2a")
EJECTION_REASON = "ejected by health checks"
ACTOR = "system"
MAX_CARD_BYTES = 1024 * 1024
_EJECTABLE = frozenset({S.IDLE, S.ACTIVE, S.BUSY, S.DEGRADED})


class Verdict(StrEnum):
    NONE = "none"
    EJECTED = "ejected"
    READMITTED = "readmitted"


@dataclass(frozen=True)
class EjectionPolicy:
    consecutive_failures: int = 3
    base_seconds: float = 30.0
    max_seconds: float = 300.0

    @classmethod
    def from_settings(cls, cfg: AgentSettings) -> EjectionPolicy:
        return cls(
            consecutive_failures=cfg.ejection_consecutive_failures,
            base_seconds=cfg.ejection_base_seconds,
            max_seconds=cfg.ejection_max_seconds,
        )


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    error: str | None
    latency_seconds: float
    # The agent answered over HTTP (even with an error): it is reachable, so the
    # probe counts as a heartbeat and the silence monitor leaves it alone.
    answered: bool = False


@dataclass(frozen=True)
class Target:
    agent_id: str
    connection_mode: str
    endpoint_url: str


# --- probing -----------------------------------------------------------------------------


def health_url(connection_mode: str, endpoint_url: str) -> str:
    base = endpoint_url.rstrip("/")
    if connection_mode == "a2a":
        return f"{base}/.well-known/agent-card.json"
    return f"{base}/health"


async def probe(client: httpx.AsyncClient, target: Target, *, timeout: float) -> ProbeResult:
    """Probe one agent; never raises (a failure is a result)."""
    url = health_url(target.connection_mode, target.endpoint_url)
    started = time.perf_counter()
    answered = False
    try:
        async with (
            asyncio.timeout(timeout),
            client.stream(
                "GET", url, headers={"Accept": "application/json"}, timeout=timeout
            ) as resp,
        ):
            answered = True
            error = await _judge(target, resp, url)
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
    except Exception as exc:  # connection refused, DNS, TLS, invalid URL...
        error = f"{type(exc).__name__}: {exc}"[:300]
    return ProbeResult(
        ok=error is None,
        error=error,
        latency_seconds=time.perf_counter() - started,
        answered=answered,
    )


async def _judge(target: Target, resp: httpx.Response, url: str) -> str | None:
    """None when the answer is healthy, else why not."""
    if target.connection_mode != "a2a":
        return None if resp.is_success else f"HTTP {resp.status_code} from {url}"
    if resp.status_code != 200:
        return f"HTTP {resp.status_code} from {url}"
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > MAX_CARD_BYTES:
            return f"agent card larger than {MAX_CARD_BYTES} bytes"
    try:
        card = json.loads(bytes(body))
    except ValueError:
        return "agent card is not JSON"
    return None if isinstance(card, dict) else "agent card is not a JSON object"


# --- the ejection rules ------------------------------------------------------------------


class _At:
    """A clock stopped at one instant: the outcome is judged at the time it is applied."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def apply_outcome(
    health: AgentHealth, ok: bool, *, now: datetime, policy: EjectionPolicy
) -> Verdict:
    """Feed one probe outcome to the agent's ejector; updates ``health`` in place.

    An outcome while the agent is still ejected changes nothing: only the first
    probe after the ejection has run out decides.
    """
    ejector = OutlierEjector(
        consecutive_failures=policy.consecutive_failures,
        base_seconds=policy.base_seconds,
        max_seconds=policy.max_seconds,
        clock=_At(now),
        failures=health.consecutive_failures,
        times_ejected=health.times_ejected,
        ejected_until=health.ejected_until,
        probing=health.probing,
    )
    if ejector.is_ejected():  # (an ejection that ran out turns into probing)
        return Verdict.NONE  # probed for liveness only: the ejection runs its course
    verdict = Verdict.NONE
    if ok:
        readmit = ejector.probing
        ejector.record_success()
        if readmit:
            verdict = Verdict.READMITTED
            health.healthy_since = now
        elif health.healthy_since is None:
            health.healthy_since = now
        else:
            _decay(health, ejector, now=now, base_seconds=policy.base_seconds)
    else:
        health.healthy_since = None
        if ejector.record_failure():
            verdict = Verdict.EJECTED
    health.consecutive_failures = ejector.failures
    health.times_ejected = ejector.times_ejected
    health.ejected_until = ejector.ejected_until
    health.probing = ejector.probing
    return verdict


def _decay(
    health: AgentHealth, ejector: OutlierEjector, *, now: datetime, base_seconds: float
) -> None:
    """One ejection forgiven per ``base_seconds`` of uninterrupted health."""
    if ejector.times_ejected <= 0 or health.healthy_since is None:
        return
    steps = int((now - health.healthy_since).total_seconds() // base_seconds)
    if steps > 0:
        ejector.times_ejected = max(0, ejector.times_ejected - steps)
        health.healthy_since += timedelta(seconds=steps * base_seconds)


# --- leases ------------------------------------------------------------------------------


async def due_agents(session: AsyncSession, *, now: datetime, limit: int) -> list[tuple[str, bool]]:
    """(agent id, has a health row) of http/a2a agents due for a probe and not leased."""
    stmt = (
        select(Agent.id, AgentHealth.agent_id.is_not(None))
        .outerjoin(AgentHealth, AgentHealth.agent_id == Agent.id)
        .where(
            Agent.connection_mode.in_(PROBED_MODES),
            Agent.endpoint_url.is_not(None),
            or_(
                AgentHealth.agent_id.is_(None),
                and_(
                    AgentHealth.next_probe_at <= now,
                    or_(AgentHealth.lease_until.is_(None), AgentHealth.lease_until <= now),
                ),
            ),
        )
        .order_by(AgentHealth.next_probe_at)
        .limit(limit)
    )
    return [(str(agent_id), bool(has_row)) for agent_id, has_row in await session.execute(stmt)]


async def claim(
    session: AsyncSession,
    *,
    due: Sequence[tuple[str, bool]],
    owner: str,
    now: datetime,
    lease_seconds: float,
) -> list[Target]:
    """Lease the due agents to ``owner``; the ones another replica leased first are left out."""
    missing = [agent_id for agent_id, has_row in due if not has_row]
    if missing:
        await _create_rows(session, missing, now)
    result = await session.execute(
        update(AgentHealth)
        .where(
            AgentHealth.agent_id.in_([agent_id for agent_id, _ in due]),
            AgentHealth.next_probe_at <= now,
            or_(AgentHealth.lease_until.is_(None), AgentHealth.lease_until <= now),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
        .returning(AgentHealth.agent_id)
        .execution_options(synchronize_session=False)
    )
    claimed = [str(agent_id) for agent_id in result.scalars()]
    if not claimed:
        return []
    rows = await session.execute(
        select(Agent.id, Agent.connection_mode, Agent.endpoint_url).where(
            Agent.id.in_(claimed), Agent.endpoint_url.is_not(None)
        )
    )
    return [Target(str(i), str(mode), str(url)) for i, mode, url in rows]


async def _create_rows(session: AsyncSession, agent_ids: list[str], now: datetime) -> None:
    """A health row per agent (due at once); rows another replica made first are kept."""
    source = select(
        Agent.id,
        literal(0),
        literal(0),
        literal(False),
        literal(now, type_=AgentHealth.__table__.c.next_probe_at.type),
    ).where(Agent.id.in_(agent_ids))
    columns = ["agent_id", "consecutive_failures", "times_ejected", "probing", "next_probe_at"]
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(AgentHealth).from_select(columns, source)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["agent_id"]))


# --- applying a result -------------------------------------------------------------------


async def apply_result(
    session: AsyncSession,
    *,
    target: Target,
    result: ProbeResult,
    owner: str,
    now: datetime,
    policy: EjectionPolicy,
    interval: float,
) -> Verdict | None:
    """Record a probe's outcome (as the lease holder), eject or re-admit the agent.

    None when the lease was lost (another replica took over) or the agent is gone.
    """
    health = (
        await session.execute(
            select(AgentHealth).where(AgentHealth.agent_id == target.agent_id).with_for_update()
        )
    ).scalar_one_or_none()
    if health is None or health.lease_owner != owner:
        return None
    try:
        agent = await agents_service.get_agent(session, agent_id=target.agent_id, for_update=True)
    except agents_service.AgentNotFound:
        return None
    verdict = apply_outcome(health, result.ok, now=now, policy=policy)
    health.last_probe_at = now
    health.last_probe_ok = result.ok
    health.last_error = result.error[:500] if result.error else None
    health.last_latency_seconds = result.latency_seconds
    health.lease_owner = None
    health.lease_until = None
    # Ejected agents are still probed every interval (for liveness), and once more
    # the moment the ejection runs out; that probe decides.
    next_probe = now + timedelta(seconds=interval)
    ejected_until = health.ejected_until
    ejected = ejected_until is not None and ejected_until > now
    if ejected_until is not None and ejected:
        next_probe = min(next_probe, ejected_until)
    health.next_probe_at = next_probe
    if result.answered:
        agent.last_heartbeat_at = now
    if result.ok and not ejected:
        _alive(session, agent, now=now, readmitted=verdict == Verdict.READMITTED)
    if verdict == Verdict.EJECTED:
        _eject(session, agent, health, result=result, now=now)
    elif verdict == Verdict.READMITTED:
        _event(session, agent, "readmitted", times_ejected=health.times_ejected)
    await session.flush()
    return verdict


def _ours(agent: Agent) -> bool:
    """Is the agent in ERROR because the health checks ejected it?"""
    return agent.status == S.ERROR and (agent.status_reason or "").startswith(EJECTION_REASON)


def _alive(session: AsyncSession, agent: Agent, *, now: datetime, readmitted: bool) -> None:
    """A successful probe brings an OFFLINE or ejected agent back."""
    if agent.status == S.OFFLINE or _ours(agent):
        agents_service.transition(
            session,
            agent,
            load_status(agent.current_load, agent.max_concurrency),
            reason="re-admitted: health check passed" if readmitted else "health check passed",
            now=now,
            actor=ACTOR,
        )


def _eject(
    session: AsyncSession, agent: Agent, health: AgentHealth, *, result: ProbeResult, now: datetime
) -> None:
    until = health.ejected_until
    assert until is not None
    error = result.error
    reason = f"{EJECTION_REASON} until {until.isoformat()}: {error or 'failed'}"[:500]
    current = S(agent.status)
    # ERROR means reachable but failing; an agent that does not answer at all stays
    # (or goes, through the silence monitor) OFFLINE. PAUSED stays PAUSED.
    if current in _EJECTABLE or (current == S.OFFLINE and result.answered):
        agents_service.transition(session, agent, S.ERROR, reason=reason, now=now, actor=ACTOR)
    elif _ours(agent):
        agent.status_reason = reason
    _event(
        session,
        agent,
        "ejected",
        ejected_until=until.isoformat(),
        seconds=(until - now).total_seconds(),
        times_ejected=health.times_ejected,
        error=error,
        status=agent.status,
    )


def _event(session: AsyncSession, agent: Agent, kind: str, **data: Any) -> None:
    record_event(
        session,
        type=f"agent.{kind}",
        resource_type="agent",
        resource_id=agent.id,
        data={"name": agent.name, **data},
        actor=ACTOR,
    )


# --- what operators see ------------------------------------------------------------------


@dataclass(frozen=True)
class HealthSnapshot:
    ejected: bool
    consecutive_failures: int
    times_ejected: int
    ejected_until: datetime | None
    last_probe_at: datetime | None
    last_probe_ok: bool | None
    last_error: str | None
    last_latency_seconds: float | None
    next_probe_at: datetime


def snapshot(health: AgentHealth, *, now: datetime) -> HealthSnapshot:
    return HealthSnapshot(
        ejected=health.ejected_until is not None and health.ejected_until > now,
        consecutive_failures=health.consecutive_failures,
        times_ejected=health.times_ejected,
        ejected_until=health.ejected_until,
        last_probe_at=health.last_probe_at,
        last_probe_ok=health.last_probe_ok,
        last_error=health.last_error,
        last_latency_seconds=health.last_latency_seconds,
        next_probe_at=health.next_probe_at,
    )


async def health_of(
    session: AsyncSession, *, agent_id: str, now: datetime
) -> HealthSnapshot | None:
    health = await session.get(AgentHealth, agent_id)
    return snapshot(health, now=now) if health is not None else None
