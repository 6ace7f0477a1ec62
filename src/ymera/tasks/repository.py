"""Every query on the tasks table (and the agent load counter it moves)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.models.tasks import Task

_LOCKED = "ymera_locked_tasks"
_ROWS = "ymera_task_rows"
_T = cast(Table, Task.__table__)
_INSERT = insert(_T)  # Core statements: compiled once, no ORM work per row
_ASSIGN = (
    update(_T)
    .where(_T.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempt=bindparam("b_attempt"),
        agent_id=bindparam("b_agent_id"),
        lease_token=bindparam("b_lease_token"),
        lease_expires_at=bindparam("b_lease_expires_at"),
        assigned_at=bindparam("b_assigned_at"),
        updated_at=bindparam("b_updated_at"),
        routing=bindparam("b_routing", type_=_T.c.routing.type),
    )
)


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(Task), rows)


def defer_insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` when the unit of work commits, together with every other
    deferred row (one multi-row INSERT for a whole group commit)."""
    session.info.setdefault(_ROWS, []).extend(rows)


async def flush_deferred(session: AsyncSession) -> None:
    """Insert the deferred rows now (before a claim that should see them)."""
    rows = session.info.pop(_ROWS, None)
    if rows:
        await (await session.connection()).execute(_INSERT, rows)


@sa_event.listens_for(Session, "before_commit")
def _insert_deferred(session: Session) -> None:
    rows = session.info.pop(_ROWS, None)
    if rows:
        session.connection().execute(_INSERT, rows)


@sa_event.listens_for(Session, "after_rollback")
def _drop_deferred(session: Session) -> None:
    session.info.pop(_ROWS, None)
    session.info.pop(_LOCKED, None)


async def lock_many(session: AsyncSession, ids: Sequence[str]) -> None:
    """Lock (and load) these tasks with one statement, in id order; a later
    ``get(..., for_update=True)`` of one of them in this unit of work costs no query."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    stmt = select(Task).where(Task.id.in_(wanted)).order_by(Task.id).with_for_update()
    found = (await session.execute(stmt)).scalars().all()
    # Held here: the session's identity map only keeps weak references.
    session.info.setdefault(_LOCKED, {}).update((t.id, t) for t in found)


async def get(session: AsyncSession, task_id: str, *, for_update: bool = False) -> Task | None:
    if for_update:
        locked: Task | None = session.info.get(_LOCKED, {}).get(task_id)
        if locked is not None:
            return locked
    stmt = select(Task).where(Task.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_many(session: AsyncSession, ids: Sequence[str]) -> Sequence[Task]:
    if not ids:
        return []
    return (await session.execute(select(Task).where(Task.id.in_(list(ids))))).scalars().all()


async def find_idempotent(session: AsyncSession, *, created_by: str, key: str) -> Sequence[Task]:
    """The tasks one request with this key created (a batch stores ``key#<id>`` on
    all but its first task, since the unique index is per key)."""
    stmt = (
        select(Task)
        .where(
            Task.created_by == created_by,
            or_(
                Task.idempotency_key == key,
                Task.idempotency_key.startswith(f"{key}#", autoescape=True),
            ),
        )
        .order_by(Task.created_at, Task.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def clear_idempotency(session: AsyncSession, task_ids: Sequence[str]) -> None:
    await session.execute(
        update(Task)
        .where(Task.id.in_(list(task_ids)))
        .values(idempotency_key=None, request_hash=None, idempotency_expires_at=None)
        .execution_options(synchronize_session=False)
    )


async def list_tasks(
    session: AsyncSession,
    *,
    statuses: Sequence[str],
    types: Sequence[str],
    agent_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Task]:
    stmt = select(Task)
    if statuses:
        stmt = stmt.where(Task.status.in_(list(statuses)))
    if types:
        stmt = stmt.where(Task.type.in_(list(types)))
    if agent_id is not None:
        stmt = stmt.where(Task.agent_id == agent_id)
    if created_after is not None:
        stmt = stmt.where(Task.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(Task.created_at < created_before)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(Task.created_at < at, and_(Task.created_at == at, Task.id < last_id)))
    stmt = stmt.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def has_pending(session: AsyncSession, *, now: datetime) -> bool:
    stmt = select(Task.id).where(Task.status == "PENDING", Task.available_at <= now).limit(1)
    return (await session.execute(stmt)).first() is not None


_CLAIM_COLUMNS = (
    Task.id,
    Task.type,
    Task.priority,
    Task.input,
    Task.required_capabilities,
    Task.preferred_agents,
    Task.excluded_agents,
    Task.file_ids,
    Task.deadline,
    Task.timeout_seconds,
    Task.attempt,
    Task.workflow_step_id,
)


async def pending_window(
    session: AsyncSession, *, now: datetime, limit: int, offset: int = 0
) -> Sequence[Any]:
    """The head of the queue, locked (SKIP LOCKED on PostgreSQL so replicas share
    it): rows of the columns claiming needs, not ORM objects."""
    stmt = (
        select(*_CLAIM_COLUMNS)
        .where(Task.status == "PENDING", Task.available_at <= now)
        .order_by(Task.priority.desc(), Task.created_at, Task.id)
        .limit(limit)
        .offset(offset)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).all()


async def assign_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Apply assignments (each a dict with the task's ``id`` and the new values) in
    one batched UPDATE by primary key; the rows are locked by the caller."""
    if rows:
        params = [{f"b_{k}": v for k, v in row.items()} for row in rows]
        await (await session.connection()).execute(_ASSIGN, params)


async def expired_leases(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Task]:
    stmt = (
        select(Task)
        .where(Task.status.in_(("ASSIGNED", "RUNNING")), Task.lease_expires_at < now)
        .order_by(Task.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def past_deadline(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Task]:
    stmt = (
        select(Task)
        .where(
            Task.status.in_(("PENDING", "ASSIGNED", "RUNNING")),
            Task.deadline.is_not(None),
            Task.deadline < now,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def active_for_agent(session: AsyncSession, agent_id: str) -> Sequence[Task]:
    stmt = (
        select(Task)
        .where(Task.agent_id == agent_id, Task.status.in_(("ASSIGNED", "RUNNING")))
        .with_for_update()
    )
    return (await session.execute(stmt)).scalars().all()
