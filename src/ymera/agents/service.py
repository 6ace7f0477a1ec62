"""Agent registry rules: CRUD, ownership, the status machine, heartbeats, silence."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.agents import repository
from ymera.agents.schemas import AgentCreate, AgentUpdate, SortField
from ymera.agents.status import (
    MANUAL_TARGETS,
    AgentStatus,
    IllegalTransition,
    check_transition,
    follow_load,
    load_status,
)
from ymera.auth.permissions import Permission
from ymera.auth.principal import Principal
from ymera.db.database import LAST, at_commit
from ymera.errors import Conflict, Forbidden, NotFound, Unprocessable
from ymera.events.outbox import record_event
from ymera.kit.ids import new_id
from ymera.kit.pagination import Slice, decode_cursor, encode_cursor
from ymera.models.agents import Agent

S = AgentStatus
_LOAD_DELTAS = "ymera_agent_load_deltas"
_FOLLOW = "ymera_agents_follow_load"
_FOLLOW_AT = "ymera_agents_follow_load_at"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class AgentNameTaken(Conflict):
    code = "agent_name_taken"


class AgentHasRunningTasks(Conflict):
    code = "agent_has_running_tasks"


def _event(
    session: AsyncSession | Session, agent: Agent, kind: str, actor: str | None, **data: Any
) -> None:
    record_event(
        session,
        type=f"agent.{kind}",
        resource_type="agent",
        resource_id=agent.id,
        data={"name": agent.name, **data},
        actor=actor,
    )


def _check_owner(principal: Principal, agent: Agent) -> None:
    if principal.kind == "agent":
        if principal.agent_id != agent.id:
            raise Forbidden("This agent key belongs to another agent", code="not_your_agent")
        return
    if principal.can(Permission.AGENTS_OPERATE) or agent.owner_id == principal.user_id:
        return
    raise Forbidden(
        "Only the agent's owner or an operator may change it",
        code="not_owner",
        permission=Permission.AGENTS_OPERATE.value,
    )


def transition(
    session: AsyncSession | Session,
    agent: Agent,
    target: AgentStatus,
    *,
    reason: str | None,
    now: datetime,
    actor: str | None,
) -> bool:
    """Move ``agent`` to ``target`` through the transition table; records the event.

    Returns False when it already was there.
    """
    current = AgentStatus(agent.status)
    if current == target:
        return False
    check_transition(current, target)
    agent.status = target.value
    agent.status_reason = reason
    agent.status_changed_at = now
    agent.updated_at = now
    _event(
        session,
        agent,
        "status_changed",
        actor,
        **{"from": current.value, "to": target.value, "reason": reason},
    )
    return True


# --- CRUD ------------------------------------------------------------------------------


async def create_agent(
    session: AsyncSession, *, principal: Principal, data: AgentCreate, now: datetime
) -> Agent:
    if data.connection_mode.value != "worker" and data.endpoint_url is None:
        raise Unprocessable(
            f"endpoint_url is required for {data.connection_mode.value} agents",
            code="endpoint_required",
        )
    if await repository.get_by_name(session, data.name) is not None:
        raise AgentNameTaken(f"An agent named {data.name!r} already exists")
    agent = Agent(
        id=new_id(),
        name=data.name,
        type=data.type.value,
        description=data.description,
        capabilities=[c.model_dump() for c in data.capabilities],
        tags=list(data.tags),
        meta=data.metadata,
        max_concurrency=data.max_concurrency,
        connection_mode=data.connection_mode.value,
        endpoint_url=str(data.endpoint_url) if data.endpoint_url else None,
        learning_mode=data.learning_mode.value if data.learning_mode else None,
        owner_id=principal.user_id if principal.kind == "user" else None,
        status=S.OFFLINE.value,
        status_reason="registered; waiting for the first heartbeat",
        status_changed_at=now,
        current_load=0,
        created_at=now,
        updated_at=now,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AgentNameTaken(f"An agent named {data.name!r} already exists") from exc
    await repository.replace_capabilities(
        session, agent.id, [(c.name, c.proficiency) for c in data.capabilities]
    )
    await repository.replace_tags(session, agent.id, data.tags)
    _event(session, agent, "created", principal.id, type=agent.type)
    return agent


async def get_agent(session: AsyncSession, *, agent_id: str, for_update: bool = False) -> Agent:
    agent = await repository.get(session, agent_id, for_update=for_update)
    if agent is None:
        raise AgentNotFound(f"Agent {agent_id} not found")
    return agent


async def find_agent(session: AsyncSession, *, ref: str) -> Agent | None:
    """An agent by id, else by name (None when neither names one)."""
    agent = await repository.get(session, ref)
    if agent is None:
        agent = await repository.get_by_name(session, ref)
    return agent


async def list_agents(
    session: AsyncSession,
    *,
    types: list[str],
    statuses: list[str],
    capability: str | None,
    min_proficiency: float | None,
    tag: str | None,
    sort: SortField,
    cursor: str | None,
    limit: int,
) -> Slice[Agent]:
    raw = decode_cursor(cursor)
    after: tuple[Any, str] | None = None
    if raw is not None:
        if raw.get("s") != sort.value or "v" not in raw or "id" not in raw:
            raise Unprocessable("cursor does not match this sort order", code="invalid_cursor")
        value: Any = raw["v"]
        if sort.value.lstrip("-") == "created_at":
            try:
                value = datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise Unprocessable("invalid cursor", code="invalid_cursor") from exc
        after = (value, str(raw["id"]))
    rows = await repository.list_agents(
        session,
        types=types,
        statuses=statuses,
        capability=capability,
        min_proficiency=min_proficiency,
        tag=tag,
        sort=sort.value,
        after=after,
        limit=limit + 1,
    )
    items = list(rows[:limit])
    nxt = None
    if len(rows) > limit:
        last = items[-1]
        v: Any = last.name if sort.value.lstrip("-") == "name" else last.created_at.isoformat()
        nxt = encode_cursor({"s": sort.value, "v": v, "id": last.id})
    return Slice(items=items, next_cursor=nxt)


async def update_agent(
    session: AsyncSession,
    *,
    principal: Principal,
    agent_id: str,
    data: AgentUpdate,
    now: datetime,
) -> Agent:
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    _check_owner(principal, agent)
    changed: list[str] = []
    fields = data.model_dump(exclude_unset=True)
    if "description" in fields and data.description is not None:
        agent.description = data.description
        changed.append("description")
    if data.type is not None:
        agent.type = data.type.value
        changed.append("type")
    if data.capabilities is not None:
        agent.capabilities = [c.model_dump() for c in data.capabilities]
        await repository.replace_capabilities(
            session, agent.id, [(c.name, c.proficiency) for c in data.capabilities]
        )
        changed.append("capabilities")
    if data.tags is not None:
        agent.tags = list(data.tags)
        await repository.replace_tags(session, agent.id, data.tags)
        changed.append("tags")
    if data.metadata is not None:
        agent.meta = data.metadata
        changed.append("metadata")
    if data.endpoint_url is not None:
        if agent.connection_mode == "worker":
            raise Unprocessable("worker agents have no endpoint_url", code="invalid_field")
        agent.endpoint_url = str(data.endpoint_url)
        changed.append("endpoint_url")
    if "learning_mode" in fields:
        agent.learning_mode = data.learning_mode.value if data.learning_mode else None
        changed.append("learning_mode")
    if data.max_concurrency is not None:
        agent.max_concurrency = data.max_concurrency
        changed.append("max_concurrency")
        target = follow_load(S(agent.status), agent.current_load, agent.max_concurrency)
        transition(session, agent, target, reason="capacity changed", now=now, actor=principal.id)
    if changed:
        agent.updated_at = now
        await session.flush()
        _event(session, agent, "updated", principal.id, changed=changed)
    return agent


async def delete_agent(
    session: AsyncSession, *, principal: Principal, agent_id: str, force: bool, now: datetime
) -> None:
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    _check_owner(principal, agent)
    if agent.current_load > 0 and not force:
        raise AgentHasRunningTasks(
            f"Agent {agent.name} holds {agent.current_load} running task(s); "
            "retry with force=true to re-queue them",
            running=agent.current_load,
        )
    # Imported here: both domains call into this one.
    from ymera.auth import service as auth_service
    from ymera.tasks import leases

    requeued = await leases.requeue_agent(
        session, agent_id=agent.id, now=now, reason="agent deleted"
    )
    await auth_service.revoke_agent_keys(session, agent_id=agent.id, now=now)
    _event(session, agent, "deleted", principal.id, forced=force, requeued=len(requeued))
    await repository.delete_agent(session, agent.id)


# --- status ----------------------------------------------------------------------------


async def set_status(
    session: AsyncSession,
    *,
    principal: Principal,
    agent_id: str,
    target: AgentStatus,
    reason: str | None,
    now: datetime,
) -> Agent:
    """An operator's manual change. Only DEGRADED, ERROR and OFFLINE are set by hand,
    plus IDLE to clear one of those; load and connection drive the rest."""
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    current = S(agent.status)
    if target == S.IDLE and current in (S.DEGRADED, S.ERROR):
        target = load_status(agent.current_load, agent.max_concurrency)
    elif target not in MANUAL_TARGETS:
        raise IllegalTransition(
            f"{target.value} is not set by hand: use pause/resume, or it follows load and "
            "connection; set DEGRADED, ERROR or OFFLINE, or IDLE to clear DEGRADED/ERROR",
            current=current.value,
            requested=target.value,
            allowed=sorted(s.value for s in MANUAL_TARGETS),
        )
    transition(session, agent, target, reason=reason, now=now, actor=principal.id)
    await session.flush()
    return agent


async def pause(
    session: AsyncSession, *, principal: Principal, agent_id: str, reason: str | None, now: datetime
) -> Agent:
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    _check_owner(principal, agent)
    transition(session, agent, S.PAUSED, reason=reason or "paused", now=now, actor=principal.id)
    await session.flush()
    return agent


def _connected(agent: Agent, now: datetime, heartbeat_timeout: float) -> bool:
    beat = agent.last_heartbeat_at
    return beat is not None and now - beat <= timedelta(seconds=heartbeat_timeout)


async def resume(
    session: AsyncSession,
    *,
    principal: Principal,
    agent_id: str,
    now: datetime,
    heartbeat_timeout: float,
) -> Agent:
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    _check_owner(principal, agent)
    if agent.status != S.PAUSED:
        raise IllegalTransition(
            f"Agent is {agent.status}, not PAUSED", current=agent.status, allowed=[]
        )
    if _connected(agent, now, heartbeat_timeout):
        target = load_status(agent.current_load, agent.max_concurrency)
        reason = "resumed"
    else:
        target = S.OFFLINE
        reason = "resumed; no recent heartbeat"
    transition(session, agent, target, reason=reason, now=now, actor=principal.id)
    await session.flush()
    return agent


async def heartbeat(
    session: AsyncSession,
    *,
    principal: Principal,
    agent_id: str,
    load: int | None,
    now: datetime,
) -> Agent:
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    _check_owner(principal, agent)
    agent.last_heartbeat_at = now
    if load is not None:
        agent.current_load = load
    current = S(agent.status)
    if current == S.OFFLINE:
        transition(
            session,
            agent,
            load_status(agent.current_load, agent.max_concurrency),
            reason="heartbeat",
            now=now,
            actor=principal.id,
        )
    else:
        target = follow_load(current, agent.current_load, agent.max_concurrency)
        transition(session, agent, target, reason="load", now=now, actor=principal.id)
    await session.flush()
    return agent


async def mark_silent_offline(
    session: AsyncSession, *, now: datetime, heartbeat_timeout: float, limit: int = 500
) -> list[Agent]:
    """Mark agents silent for longer than the timeout OFFLINE (PAUSED ones stay paused).

    Safe on every replica at once: rows are locked with SKIP LOCKED on PostgreSQL
    and the status is re-checked under the lock.
    """
    cutoff = now - timedelta(seconds=heartbeat_timeout)
    live = [s.value for s in (S.IDLE, S.ACTIVE, S.BUSY, S.DEGRADED, S.ERROR)]
    agents = await repository.silent_agents(session, cutoff=cutoff, statuses=live, limit=limit)
    for agent in agents:
        transition(
            session,
            agent,
            S.OFFLINE,
            reason=f"no heartbeat for {heartbeat_timeout:g} s",
            now=now,
            actor="system",
        )
    await session.flush()
    return list(agents)


# --- capacity (used by the task engine) ---------------------------------------------------


async def reserve_capacity(session: AsyncSession, *, agent_id: str, count: int = 1) -> bool:
    """Take ``count`` slots if the agent has them; False otherwise (another replica won)."""
    return await repository.take_capacity(session, agent_id, count)


def defer_load(session: AsyncSession, *, agent_id: str, count: int) -> None:
    """Count ``count`` more tasks on an agent whose capacity the caller tracks.

    Load changes are summed per agent in the unit of work and written once per
    agent, in one lock order (sorted ids), when it commits (or at
    :func:`sync_status_with_load`): a batch of a hundred results for one agent costs one
    update of its row, and replicas' batches never lock agent rows in a cycle.
    """
    _defer_load(session, agent_id, count)


async def release_capacity(session: AsyncSession, *, agent_id: str, count: int = 1) -> None:
    """Free ``count`` slots (deferred like :func:`defer_load`; the load never goes below 0)."""
    _defer_load(session, agent_id, -count)


def pending_load(session: AsyncSession) -> dict[str, int]:
    """Load changes this unit of work made and has not written yet, per agent."""
    return dict(session.info.get(_LOAD_DELTAS) or {})


def _defer_load(session: AsyncSession, agent_id: str, delta: int) -> None:
    deltas: dict[str, int] = session.info.setdefault(_LOAD_DELTAS, {})
    deltas[agent_id] = deltas.get(agent_id, 0) + delta


def follow_load_at_commit(session: AsyncSession, *, agent_ids: list[str], now: datetime) -> None:
    """:func:`sync_status_with_load` at the end of this transaction, just before its
    events: the deferred load changes are written and these agents (and every
    agent whose load moved) follow their load there. The group-commit writer does
    this: the agents' rows are the rows its lanes share, so they are locked last
    (one lane's transaction runs its own work while another commits)."""
    follow: set[str] = session.info.setdefault(_FOLLOW, set())
    follow.update(agent_ids)
    session.info[_FOLLOW_AT] = now


# Runs after the other deferred writers and just before the events (which come
# last): the agents' rows are locked here, in id order, in every transaction
# that defers its load, so concurrent writers wait on each other only for their
# tails (this, the events, COMMIT), never in the middle of their work.
@at_commit(LAST - 10)
def _write_deferred_load(session: Session) -> None:
    deltas = session.info.pop(_LOAD_DELTAS, None) or {}
    follow: set[str] = session.info.pop(_FOLLOW, None) or set()
    now = session.info.pop(_FOLLOW_AT, None)
    _write_load(session, deltas, follow, now)


def _write_load(
    session: Session, deltas: dict[str, int], follow: set[str], now: datetime | None
) -> None:
    """Write the load changes; with ``follow`` (and ``now``), those agents and every
    agent whose load moved then follow their load (IDLE / ACTIVE / BUSY)."""
    connection = session.connection()
    known: dict[str, tuple[str, int, int]] = {}
    # One pass in id order, each agent locked once: by its load's update, or (an
    # agent to follow whose load did not move) by reading it FOR UPDATE, so two
    # transactions doing this never wait on each other in a cycle.
    following = follow if now is not None else set()
    for agent_id in sorted(set(deltas) | following):
        delta = deltas.get(agent_id, 0)
        if delta:
            row = connection.execute(repository.SHIFT_LOAD, {"aid": agent_id, "d": delta}).first()
        elif agent_id in following:
            row = connection.execute(repository.LOCK_LOAD_ROW, {"aid": agent_id}).first()
        else:
            continue
        if row is not None:
            known[agent_id] = (row.status, row.current_load, row.max_concurrency)
    if not following or now is None:
        return
    moving = sorted(
        agent_id
        for agent_id, (status, load, max_concurrency) in known.items()
        if follow_load(S(status), load, max_concurrency) != S(status)
    )
    if not moving:
        return
    for agent in session.scalars(repository.locked_agents(moving)):  # locked above
        target = follow_load(S(agent.status), agent.current_load, agent.max_concurrency)
        transition(session, agent, target, reason="load", now=now, actor="dispatcher")


@sa_event.listens_for(Session, "after_rollback")
def _drop_deferred_load(session: Session) -> None:
    session.info.pop(_LOAD_DELTAS, None)
    session.info.pop(_FOLLOW, None)
    session.info.pop(_FOLLOW_AT, None)


async def dispatch_rows(session: AsyncSession, *, agent_ids: list[str]) -> list[Any]:
    """What the dispatcher needs of these agents (id, name, status, load, max
    concurrency, capabilities), read as plain rows."""
    return list(await repository.dispatch_rows(session, agent_ids))


async def sync_status_with_load(
    session: AsyncSession, *, agent_ids: list[str], now: datetime
) -> None:
    """Move live agents between IDLE / ACTIVE / BUSY to match their current load
    (writing deferred load changes first), now. An agent whose status stays costs
    no more than its load update (or a locked read); only a change loads the
    agent. :func:`follow_load_at_commit` does the same at commit."""
    deltas = session.info.pop(_LOAD_DELTAS, None) or {}
    await session.run_sync(_write_load, deltas, set(agent_ids), now)


async def mark_connected(
    session: AsyncSession, *, agent_id: str, now: datetime, replica: str | None
) -> Agent:
    """A worker connected (or heartbeated over its connection).

    A plain update of the heartbeat (no row lock taken first: heartbeats are
    frequent and must not join lock cycles with capacity updates); the agent is
    locked only when it has to come back from OFFLINE.
    """
    if await repository.touch_heartbeat(session, agent_id, now=now, replica=replica):
        agent = await get_agent(session, agent_id=agent_id)
        if agent.status != S.OFFLINE:
            return agent
    agent = await get_agent(session, agent_id=agent_id, for_update=True)
    agent.last_heartbeat_at = now
    agent.connected_replica = replica
    if agent.status == S.OFFLINE:
        transition(
            session,
            agent,
            load_status(agent.current_load, agent.max_concurrency),
            reason="worker connected",
            now=now,
            actor=agent.id,
        )
    return agent


async def http_agents(session: AsyncSession) -> list[Agent]:
    """Agents YMERA pushes tasks to (connection mode http): the routable ones, and
    those in ERROR only because their circuit is open (the breaker decides when to
    probe them)."""
    return [
        a
        for a in await repository.push_agents(session)
        if a.status != S.ERROR or (a.status_reason or "").startswith("circuit open")
    ]


async def set_circuit_status(
    session: AsyncSession, *, agent_id: str, open_: bool, now: datetime, detail: str
) -> None:
    """Show a push agent's circuit: ERROR while open, back to its load status when closed."""
    agent = await repository.get(session, agent_id, for_update=True)
    if agent is None:
        return
    current = S(agent.status)
    if open_ and current in (S.IDLE, S.ACTIVE, S.BUSY, S.DEGRADED):
        transition(
            session, agent, S.ERROR, reason=f"circuit open: {detail}", now=now, actor="system"
        )
        _event(session, agent, "circuit_opened", "system", detail=detail)
    elif (
        not open_ and current == S.ERROR and (agent.status_reason or "").startswith("circuit open")
    ):
        target = load_status(agent.current_load, agent.max_concurrency)
        transition(session, agent, target, reason="circuit closed", now=now, actor="system")
        _event(session, agent, "circuit_closed", "system")


async def count_matching(
    session: AsyncSession, *, agent_type: str | None, capabilities: list[str]
) -> int:
    """How many registered agents (in any status) a selector by type and
    capabilities could ever route to."""
    return await repository.count_matching(
        session, agent_type=agent_type, capabilities=capabilities
    )
