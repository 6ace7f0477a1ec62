"""Every query on the tasks table (and the agent load counter it moves)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ymera.models.tasks import Task

_LOCKED = "ymera_locked_tasks"
_ROWS = "ymera_task_rows"
_DIRTY = "ymera_dirty_task_rows"
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


@sa_event.listens_for(Session, "after_commit")
def _forget_rows(session: Session) -> None:
    session.info.pop(_LOCKED, None)  # the locks ended with the transaction


@sa_event.listens_for(Session, "after_rollback")
def _drop_deferred(session: Session) -> None:
    session.info.pop(_ROWS, None)
    session.info.pop(_LOCKED, None)
    session.info.pop(_DIRTY, None)


@dataclass(slots=True)
class TaskRow:
    """The columns an agent's report reads and changes, as a plain object: a
    report (accept, progress, result, fail, release) locks and loads these and
    saves its changes with one batched UPDATE per unit of work, instead of
    loading, tracking and flushing ORM objects."""

    id: str
    type: str
    status: str
    attempt: int
    max_attempts: int
    retry_initial: float
    retry_factor: float
    retry_cap: float
    agent_id: str | None
    lease_token: str | None
    lease_expires_at: datetime | None
    workflow_step_id: str | None
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    available_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: float | None
    progress_message: str | None


_ROW_FIELDS = [f.name for f in fields(TaskRow)]
_ROW_SELECT = select(*(_T.c[name] for name in _ROW_FIELDS))
_SAVED_FIELDS = [
    name for name in _ROW_FIELDS if name not in ("id", "type", "attempt", "workflow_step_id")
]
_SAVE = (
    update(_T)
    .where(_T.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}", type_=_T.c[name].type) for name in _SAVED_FIELDS})
)


def _rows_of(session: AsyncSession | Session) -> dict[str, TaskRow]:
    rows: dict[str, TaskRow] = session.info.setdefault(_LOCKED, {})
    return rows


async def lock_rows(session: AsyncSession, ids: Sequence[str]) -> None:
    """Lock and load the report rows of these tasks with one statement, in id
    order (the order every batch locks in); ``get_row`` then costs no query."""
    wanted = sorted(set(ids) - set(_rows_of(session)))
    if not wanted:
        return
    stmt = _ROW_SELECT.where(_T.c.id.in_(wanted)).order_by(_T.c.id).with_for_update()
    result = await (await session.connection()).execute(stmt)
    rows = _rows_of(session)
    for r in result:
        rows[r.id] = TaskRow(*r)


async def get_row(session: AsyncSession, task_id: str) -> TaskRow | None:
    """A task's report row, locked; changes to it are saved by ``save_rows``
    (at the latest when the unit of work commits)."""
    dirty: dict[str, TaskRow] = session.info.setdefault(_DIRTY, {})
    if task_id in dirty:
        return dirty[task_id]
    rows = _rows_of(session)
    if task_id not in rows:
        await lock_rows(session, [task_id])
    row = rows.get(task_id)
    if row is not None:
        dirty[task_id] = row
    return row


def _save_params(session: AsyncSession | Session) -> list[dict[str, Any]]:
    dirty: dict[str, TaskRow] = session.info.pop(_DIRTY, None) or {}
    return [
        {"b_id": row.id, **{f"b_{name}": getattr(row, name) for name in _SAVED_FIELDS}}
        for _, row in sorted(dirty.items())
    ]


async def save_rows(session: AsyncSession) -> None:
    """Write the changed report rows now (one executemany UPDATE)."""
    params = _save_params(session)
    if params:
        await (await session.connection()).execute(_SAVE, params)


@sa_event.listens_for(Session, "before_commit")
def _save_rows_at_commit(session: Session) -> None:
    params = _save_params(session)
    if params:
        session.connection().execute(_SAVE, params)


async def get(session: AsyncSession, task_id: str, *, for_update: bool = False) -> Task | None:
    if task_id in session.info.get(_LOCKED, {}) or task_id in session.info.get(_DIRTY, {}):
        # Its report row may hold unsaved changes: save them, and read afresh.
        await save_rows(session)
        session.info.get(_LOCKED, {}).pop(task_id, None)
        stmt = select(Task).where(Task.id == task_id).execution_options(populate_existing=True)
    else:
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
    _T.c.id,
    _T.c.type,
    _T.c.priority,
    _T.c.input,
    _T.c.required_capabilities,
    _T.c.preferred_agents,
    _T.c.excluded_agents,
    _T.c.file_ids,
    _T.c.deadline,
    _T.c.timeout_seconds,
    _T.c.attempt,
    _T.c.workflow_step_id,
    _T.c.workspace_id,
    _T.c.workspace_mode,
)


# The head of the queue read off ix_tasks_queue in its order: the status is a
# literal so the partial index applies, and SQLite is told to use it with
# INDEXED BY (without statistics its planner would rather sort every pending
# task: a claim would cost time in proportion to the depth of the queue).
_PENDING_WINDOW = (
    select(*_CLAIM_COLUMNS)
    .where(_T.c.status == literal_column("'PENDING'"), _T.c.available_at <= bindparam("now"))
    .order_by(_T.c.priority.desc(), _T.c.created_at, _T.c.id)
    .with_for_update(skip_locked=True)
)
_PENDING_WINDOW_SQLITE = (
    text(  # the column names are this module's constants
        f"SELECT {', '.join(c.name for c in _CLAIM_COLUMNS)} "  # noqa: S608
        "FROM tasks INDEXED BY ix_tasks_queue "
        "WHERE status = 'PENDING' AND available_at <= :now "
        "ORDER BY priority DESC, created_at, id LIMIT :limit OFFSET :offset"
    )
    .bindparams(bindparam("now", type_=_T.c.available_at.type))
    .columns(*_CLAIM_COLUMNS)
)


async def pending_window(
    session: AsyncSession, *, now: datetime, limit: int, offset: int = 0
) -> Sequence[Any]:
    """The head of the queue, locked (SKIP LOCKED on PostgreSQL so replicas share
    it): rows of the columns claiming needs, not ORM objects."""
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        params = {"now": now, "limit": limit, "offset": offset}
        return (await connection.execute(_PENDING_WINDOW_SQLITE, params)).all()
    stmt = _PENDING_WINDOW.limit(limit).offset(offset)
    return (await connection.execute(stmt, {"now": now})).all()


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


_HELD = ("ASSIGNED", "RUNNING")


async def held_with_workspace(
    session: AsyncSession, *, agent_id: str, workspace_id: str, task_id: str | None
) -> Any:
    """(id, type, workspace_mode) of the task the agent holds on the workspace
    (``task_id``, or the one assigned last), or None."""
    stmt = select(_T.c.id, _T.c.type, _T.c.workspace_mode).where(
        _T.c.agent_id == agent_id,
        _T.c.status.in_(_HELD),
        _T.c.workspace_id == workspace_id,
    )
    if task_id is not None:
        stmt = stmt.where(_T.c.id == task_id)
    stmt = stmt.order_by(_T.c.assigned_at.desc(), _T.c.id.desc()).limit(1)
    return (await session.execute(stmt)).first()


async def held_workspace_ids(session: AsyncSession, *, agent_id: str) -> list[str]:
    stmt = (
        select(_T.c.workspace_id)
        .where(
            _T.c.agent_id == agent_id,
            _T.c.status.in_(_HELD),
            _T.c.workspace_id.is_not(None),
        )
        .distinct()
    )
    return [str(w) for w in (await session.execute(stmt)).scalars().all()]


async def held_file_ids(session: AsyncSession, *, agent_id: str) -> set[str]:
    """The files attached to the tasks an agent holds now (ASSIGNED or RUNNING)."""
    stmt = select(_T.c.file_ids).where(
        _T.c.agent_id == agent_id, _T.c.status.in_(("ASSIGNED", "RUNNING"))
    )
    rows = (await (await session.connection()).execute(stmt)).all()
    return {str(f) for (ids,) in rows for f in ids or ()}
