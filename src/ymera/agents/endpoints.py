"""`/api/v1/agents`: the registry, status changes and heartbeats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ymera.agents import metrics as agent_metrics
from ymera.agents import service
from ymera.agents.schemas import (
    AgentCreate,
    AgentMetricsOut,
    AgentOut,
    AgentType,
    AgentUpdate,
    CircuitOut,
    HeartbeatIn,
    MetricsWindow,
    SortField,
    StatusChange,
)
from ymera.agents.status import AgentStatus
from ymera.auth.dependencies import require
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.kit.pagination import Page
from ymera.state import DbSession, State

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])

Read = Annotated[Principal, Depends(require(Permission.AGENTS_READ))]
Write = Annotated[Principal, Depends(require(Permission.AGENTS_WRITE))]
Operate = Annotated[Principal, Depends(require(Permission.AGENTS_OPERATE))]
Connect = Annotated[Principal, Depends(require(Permission.AGENTS_CONNECT))]


@router.post("", response_model=AgentOut, status_code=201)
async def create_agent(
    body: AgentCreate, session: DbSession, state: State, principal: Write
) -> AgentOut:
    """Register an agent. It starts OFFLINE until its first heartbeat or connection.

    Create an agent key for it with `POST /api/v1/api-keys` and `agent_id`.
    """
    agent = await service.create_agent(
        session, principal=principal, data=body, now=state.clock.now()
    )
    return AgentOut.model_validate(agent)


@router.get("", response_model=Page[AgentOut])
async def list_agents(
    session: DbSession,
    _: Read,
    type: Annotated[list[AgentType] | None, Query(description="Repeatable.")] = None,
    status: Annotated[list[AgentStatus] | None, Query(description="Repeatable.")] = None,
    capability: Annotated[str | None, Query(max_length=100)] = None,
    min_proficiency: Annotated[float | None, Query(ge=0, le=1)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    sort: SortField = SortField.NAME,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[AgentOut]:
    """List agents with filters (type, status, capability with a minimum proficiency,
    tag), sorted by name or creation time, with cursor pagination."""
    page = await service.list_agents(
        session,
        types=[t.value for t in type or []],
        statuses=[s.value for s in status or []],
        capability=capability,
        min_proficiency=min_proficiency,
        tag=tag,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page[AgentOut](
        items=[AgentOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get("/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: str, session: DbSession, _: Read) -> AgentOut:
    """Get one agent."""
    return AgentOut.model_validate(await service.get_agent(session, agent_id=agent_id))


@router.patch("/{agent_id}", response_model=AgentOut)
async def update_agent(
    agent_id: str, body: AgentUpdate, session: DbSession, state: State, principal: Write
) -> AgentOut:
    """Change an agent's description, type, capabilities, capacity, tags, metadata,
    endpoint or learning mode (its owner, or an operator)."""
    agent = await service.update_agent(
        session, principal=principal, agent_id=agent_id, data=body, now=state.clock.now()
    )
    return AgentOut.model_validate(agent)


@router.delete("/{agent_id}", status_code=204)
async def delete_agent(
    agent_id: str,
    session: DbSession,
    state: State,
    principal: Write,
    force: Annotated[bool, Query(description="Delete even with running tasks.")] = False,
) -> Response:
    """Delete an agent. 409 while it holds running tasks, unless `force=true`."""
    await service.delete_agent(
        session, principal=principal, agent_id=agent_id, force=force, now=state.clock.now()
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{agent_id}/pause", response_model=AgentOut)
async def pause_agent(
    agent_id: str,
    session: DbSession,
    state: State,
    principal: Operate,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> AgentOut:
    """Stop routing work to the agent; running work continues."""
    agent = await service.pause(
        session, principal=principal, agent_id=agent_id, reason=reason, now=state.clock.now()
    )
    return AgentOut.model_validate(agent)


@router.post("/{agent_id}/resume", response_model=AgentOut)
async def resume_agent(
    agent_id: str, session: DbSession, state: State, principal: Operate
) -> AgentOut:
    """Route work to a paused agent again (OFFLINE if it has gone silent meanwhile)."""
    agent = await service.resume(
        session,
        principal=principal,
        agent_id=agent_id,
        now=state.clock.now(),
        heartbeat_timeout=state.settings.agents.heartbeat_timeout,
    )
    return AgentOut.model_validate(agent)


@router.post("/{agent_id}/status", response_model=AgentOut)
async def set_agent_status(
    agent_id: str, body: StatusChange, session: DbSession, state: State, principal: Operate
) -> AgentOut:
    """Mark an agent DEGRADED, ERROR or OFFLINE by hand, or IDLE to clear DEGRADED/ERROR.

    An illegal change answers 409 with the allowed targets.
    """
    agent = await service.set_status(
        session,
        principal=principal,
        agent_id=agent_id,
        target=body.status,
        reason=body.reason,
        now=state.clock.now(),
    )
    return AgentOut.model_validate(agent)


@router.post("/{agent_id}/heartbeat", response_model=AgentOut)
async def agent_heartbeat(
    agent_id: str,
    session: DbSession,
    state: State,
    principal: Connect,
    body: HeartbeatIn | None = None,
) -> AgentOut:
    """Report that the agent is alive (for agents that are not connected workers).

    An OFFLINE agent comes back IDLE/ACTIVE/BUSY according to its load.
    """
    agent = await service.heartbeat(
        session,
        principal=principal,
        agent_id=agent_id,
        load=body.load if body else None,
        now=state.clock.now(),
    )
    return AgentOut.model_validate(agent)


@router.get("/{agent_id}/metrics", response_model=AgentMetricsOut)
async def get_agent_metrics(
    agent_id: str,
    session: DbSession,
    state: State,
    _: Read,
    window: MetricsWindow = MetricsWindow.HOUR,
    task_type: Annotated[
        str | None, Query(max_length=100, description="Only tasks of this type.")
    ] = None,
) -> AgentMetricsOut:
    """An agent's success rate, p50/p95 latency, throughput, load and quality score
    over a window (5m, 1h, 24h or 7d), with its health-check and ejection state and,
    for http agents, its push circuit breaker."""
    report = await agent_metrics.agent_metrics(
        session,
        agent_id=agent_id,
        window=window,
        task_type=task_type,
        now=state.clock.now(),
        minute_retention_hours=state.settings.agents.metrics_minute_retention_hours,
    )
    out = AgentMetricsOut.model_validate(report)
    breaker = state.extras["pusher"].breakers.get(agent_id)
    if breaker is not None:
        out.circuit = CircuitOut(
            state=breaker.current().value,
            consecutive_failures=breaker.consecutive_failures,
            retry_after_seconds=round(breaker.retry_after(), 3),
        )
    return out
