"""Every query on the agent tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Select, Table, and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.db import driver
from ymera.models.agents import Agent, AgentCapability, AgentTag


async def get(session: AsyncSession, agent_id: str, *, for_update: bool = False) -> Agent | None:
    stmt = select(Agent).where(Agent.id == agent_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_name(session: AsyncSession, name: str) -> Agent | None:
    return (await session.execute(select(Agent).where(Agent.name == name))).scalar_one_or_none()


async def known_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` (agent ids or names) name a registered agent."""
    wanted = list(set(keys))
    stmt = select(Agent.id, Agent.name).where(or_(Agent.id.in_(wanted), Agent.name.in_(wanted)))
    found: set[str] = set()
    for agent_id, name in (await session.execute(stmt)).all():
        found.update((agent_id, name))
    return found & set(wanted)


async def replace_capabilities(
    session: AsyncSession, agent_id: str, caps: Sequence[tuple[str, float]]
) -> None:
    await session.execute(delete(AgentCapability).where(AgentCapability.agent_id == agent_id))
    session.add_all(AgentCapability(agent_id=agent_id, name=n, proficiency=p) for n, p in caps)


async def replace_tags(session: AsyncSession, agent_id: str, tags: Sequence[str]) -> None:
    await session.execute(delete(AgentTag).where(AgentTag.agent_id == agent_id))
    session.add_all(AgentTag(agent_id=agent_id, tag=t) for t in tags)


async def delete_agent(session: AsyncSession, agent_id: str) -> None:
    await session.execute(delete(Agent).where(Agent.id == agent_id))


def _sorted(stmt: Select[Any], sort: str, after: tuple[Any, str] | None) -> Select[Any]:
    desc = sort.startswith("-")
    column = Agent.name if sort.lstrip("-") == "name" else Agent.created_at
    if after is not None:
        value, last_id = after
        if desc:
            stmt = stmt.where(or_(column < value, and_(column == value, Agent.id < last_id)))
        else:
            stmt = stmt.where(or_(column > value, and_(column == value, Agent.id > last_id)))
    if desc:
        return stmt.order_by(column.desc(), Agent.id.desc())
    return stmt.order_by(column.asc(), Agent.id.asc())


async def list_agents(
    session: AsyncSession,
    *,
    types: Sequence[str] = (),
    statuses: Sequence[str] = (),
    capability: str | None = None,
    min_proficiency: float | None = None,
    tag: str | None = None,
    sort: str = "name",
    after: tuple[Any, str] | None = None,
    limit: int = 50,
) -> Sequence[Agent]:
    stmt = select(Agent)
    if types:
        stmt = stmt.where(Agent.type.in_(list(types)))
    if statuses:
        stmt = stmt.where(Agent.status.in_(list(statuses)))
    if capability is not None:
        cap = select(AgentCapability.agent_id).where(AgentCapability.name == capability)
        if min_proficiency is not None:
            cap = cap.where(AgentCapability.proficiency >= min_proficiency)
        stmt = stmt.where(Agent.id.in_(cap))
    if tag is not None:
        stmt = stmt.where(Agent.id.in_(select(AgentTag.agent_id).where(AgentTag.tag == tag)))
    stmt = _sorted(stmt, sort, after).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def silent_agents(
    session: AsyncSession, *, cutoff: datetime, statuses: Sequence[str], limit: int
) -> Sequence[Agent]:
    """Agents in ``statuses`` whose last heartbeat is older than ``cutoff`` (or never)."""
    stmt = (
        select(Agent)
        .where(
            Agent.status.in_(list(statuses)),
            or_(Agent.last_heartbeat_at.is_(None), Agent.last_heartbeat_at < cutoff),
        )
        .order_by(Agent.last_heartbeat_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def set_status_if(
    session: AsyncSession,
    *,
    agent_id: str,
    expected: str,
    status: str,
    reason: str | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Compare-and-set the status; False when another writer changed it first."""
    values: dict[str, Any] = {
        "status": status,
        "status_reason": reason,
        "status_changed_at": now,
        "updated_at": now,
        **(extra or {}),
    }
    result = await session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.status == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def take_capacity(session: AsyncSession, agent_id: str, count: int) -> bool:
    """Reserve ``count`` slots on the agent if it has them (conditional update)."""
    result = await session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.current_load + count <= Agent.max_concurrency)
        .values(current_load=Agent.current_load + count)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# Move an agent's load by :d (never below 0) and return what its status follows.
_A = cast(Table, Agent.__table__)
_shifted = _A.c.current_load + bindparam("d")
SHIFT_LOAD = (  # Core (executed on the session's connection): compiled once
    update(_A)
    .where(_A.c.id == bindparam("aid"))
    .values(current_load=case((_shifted > 0, _shifted), else_=0))
    .returning(_A.c.id, _A.c.status, _A.c.current_load, _A.c.max_concurrency)
)


# Row locks for the load and status: FOR NO KEY UPDATE (PostgreSQL), the lock an
# UPDATE of the row takes. FOR UPDATE would also wait for the KEY SHARE locks the
# tasks' foreign key checks take on their agent (every transaction that assigns
# a task holds one), and two writers could then wait on each other in a cycle.
LOCK_LOAD_ROW = (  # Core: an agent's status and load, its row locked
    select(_A.c.id, _A.c.status, _A.c.current_load, _A.c.max_concurrency)
    .where(_A.c.id == bindparam("aid"))
    .with_for_update(key_share=True)
)


def locked_agents(ids: Sequence[str]) -> Any:
    """Agents by id, locked (FOR UPDATE on PostgreSQL), re-read into the session."""
    return (
        select(Agent)
        .where(Agent.id.in_(list(ids)))
        .order_by(Agent.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


class DispatchRow(NamedTuple):
    """What the dispatcher needs of an agent."""

    id: str
    name: str
    status: str
    current_load: int
    max_concurrency: int
    capabilities: list[dict[str, Any]]
    type: str


_DISPATCH_COLUMNS = DispatchRow._fields


async def dispatch_rows(session: AsyncSession, agent_ids: Sequence[str]) -> list[DispatchRow]:
    """These agents' dispatch rows, read at the driver level (every group commit
    that assigns reads them; see ymera.db.driver), after flushing the session's
    pending changes (as a query through the session would)."""
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    await session.flush()
    connection = await session.connection()
    dialect = connection.dialect.name
    sql, params = driver.select_by_keys(dialect, "agents", _DISPATCH_COLUMNS, ids, lock=False)
    read_json = driver.values_for(dialect).read_json
    return [
        DispatchRow(r[0], r[1], r[2], r[3], r[4], read_json(r[5]) or [], r[6])
        for r in await driver.fetch(connection, sql, params)
    ]


async def get_many(
    session: AsyncSession, ids: Sequence[str], *, fresh: bool = False
) -> Sequence[Agent]:
    """Agents by id; ``fresh`` re-reads rows already in the session (after Core updates)."""
    if not ids:
        return []
    stmt = select(Agent).where(Agent.id.in_(list(ids)))
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().all()


async def push_agents(session: AsyncSession) -> Sequence[Agent]:
    stmt = select(Agent).where(
        Agent.connection_mode == "http",
        Agent.status.in_(("IDLE", "ACTIVE", "DEGRADED", "BUSY", "ERROR")),
        Agent.endpoint_url.is_not(None),
    )
    return (await session.execute(stmt)).scalars().all()


async def touch_heartbeat(
    session: AsyncSession, agent_id: str, *, now: datetime, replica: str | None
) -> bool:
    """Record a heartbeat of a connected (not OFFLINE) agent; False when it is OFFLINE
    or gone (the caller then takes the slow path)."""
    result = await session.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.status != "OFFLINE")
        .values(last_heartbeat_at=now, connected_replica=replica)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def count_matching(
    session: AsyncSession, *, agent_type: str | None, capabilities: Sequence[str]
) -> int:
    """How many registered agents are of ``agent_type`` (any when None) and have
    every one of ``capabilities``."""
    stmt = select(func.count()).select_from(Agent)
    if agent_type is not None:
        stmt = stmt.where(Agent.type == agent_type)
    for capability in set(capabilities):
        cap = select(AgentCapability.agent_id).where(AgentCapability.name == capability)
        stmt = stmt.where(Agent.id.in_(cap))
    return int((await session.execute(stmt)).scalar() or 0)
