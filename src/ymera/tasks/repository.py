"""Every query on the tasks table (and the agent load counter it moves)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from ymera.db import driver
from ymera.db.database import at_commit
from ymera.models.tasks import Task, TaskRouting

_LOCKED = "ymera_locked_tasks"
_ROWS = "ymera_task_rows"
_ROUTING = "ymera_task_routing_rows"
_DIRTY = "ymera_dirty_task_rows"
_T = cast(Table, Task.__table__)
# The columns a new task sets (the others start NULL), and the hot statements
# run at the driver level (ymera.db.driver: no per-row Core processing).
_NEW_COLUMNS = (
    "id",
    "type",
    "status",
    "priority",
    "input",
    "required_capabilities",
    "file_ids",
    "preferred_agents",
    "excluded_agents",
    "preferred_only",
    "max_attempts",
    "attempt",
    "retry_initial",
    "retry_factor",
    "retry_cap",
    "timeout_seconds",
    "deadline",
    "available_at",
    "idempotency_key",
    "request_hash",
    "idempotency_expires_at",
    "created_by",
    "workflow_step_id",
    "agent_type",
    "workspace_id",
    "workspace_mode",
    "created_at",
    "updated_at",
    # Set when the task is assigned as it is submitted (tasks.claims.assign_new).
    "agent_id",
    "lease_token",
    "lease_expires_at",
    "assigned_at",
)
_JSON_NEW = frozenset(
    ("input", "required_capabilities", "file_ids", "preferred_agents", "excluded_agents")
)
_TIME_NEW = frozenset(
    (
        "deadline",
        "available_at",
        "idempotency_expires_at",
        "created_at",
        "updated_at",
        "lease_expires_at",
        "assigned_at",
    )
)
_INSERT_SQL = driver.insert_sql("tasks", _NEW_COLUMNS)
_ASSIGN_COLUMNS = (
    "status",
    "attempt",
    "agent_id",
    "lease_token",
    "lease_expires_at",
    "assigned_at",
    "updated_at",
)
_ASSIGN_SQL = driver.update_sql("tasks", _ASSIGN_COLUMNS)
_ROUTING_SQL = driver.insert_sql("task_routing", ("task_id", "attempt", "decided_at", "decision"))


_NEW_VALUES = itemgetter(*_NEW_COLUMNS)
_NEW_JSON_AT = tuple(i for i, c in enumerate(_NEW_COLUMNS) if c in _JSON_NEW)
_NEW_TIME_AT = tuple(i for i, c in enumerate(_NEW_COLUMNS) if c in _TIME_NEW)


class _Converter:
    """Values a row is written with, converted for one dialect: a batch shares a
    few instants (its "now") and most lists are empty, so each is converted once."""

    def __init__(self, dialect: str) -> None:
        self.values = driver.values_for(dialect)
        self.times: dict[Any, Any] = {None: None}
        self.empty = self.values.json([])

    def convert(
        self, saved: list[Any], time_at: Sequence[int], json_at: Sequence[int]
    ) -> list[Any]:
        times, values = self.times, self.values
        for i in time_at:
            v = saved[i]
            if v not in times:
                times[v] = values.time(v)
            saved[i] = times[v]
        for i in json_at:
            v = saved[i]
            saved[i] = self.empty if v == [] else values.json(v)
        return saved


def _insert_params(dialect: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    to = _Converter(dialect)
    return [tuple(to.convert(list(_NEW_VALUES(row)), _NEW_TIME_AT, _NEW_JSON_AT)) for row in rows]


async def _insert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    params = _insert_params(connection.dialect.name, rows)
    await driver.execute_many(connection, _INSERT_SQL, params)


async def insert_tasks(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert new tasks now (rows as ``tasks.service.submit`` builds them)."""
    if rows:
        await _insert(await session.connection(), rows)


def defer_insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` when the unit of work commits, together with every other
    deferred row (one multi-row INSERT for a whole group commit)."""
    session.info.setdefault(_ROWS, []).extend(rows)


def deferred_rows(session: AsyncSession) -> list[dict[str, Any]]:
    """The new tasks this unit of work will insert (``defer_insert``), not yet
    written: changes made to them are what gets inserted."""
    rows: list[dict[str, Any]] = session.info.get(_ROWS) or []
    return rows


def defer_routing(
    session: AsyncSession, decisions: list[tuple[str, int, datetime, dict[str, Any]]]
) -> None:
    """Keep routing decisions (task id, attempt, when, explanation) of deferred
    tasks: written right after them."""
    if decisions:
        session.info.setdefault(_ROUTING, []).extend(decisions)


def _routing_params(dialect: str, decisions: list[Any]) -> list[tuple[Any, ...]]:
    values = driver.values_for(dialect)
    times: dict[datetime, Any] = {}
    return [
        (
            task_id,
            attempt,
            times.get(at) or times.setdefault(at, values.time(at)),
            values.json(decision),
        )
        for task_id, attempt, at, decision in decisions
    ]


async def flush_deferred(session: AsyncSession) -> None:
    """Insert the deferred rows now (before a claim that should see them)."""
    rows = session.info.pop(_ROWS, None)
    if rows:
        await _insert(await session.connection(), rows)
    decisions = session.info.pop(_ROUTING, None)
    if decisions:
        connection = await session.connection()
        params = _routing_params(connection.dialect.name, decisions)
        await driver.execute_many(connection, _ROUTING_SQL, params)


@at_commit(10)
def _insert_deferred(session: Session) -> None:
    rows = session.info.pop(_ROWS, None)
    if rows:
        connection = session.connection()
        params = _insert_params(connection.dialect.name, rows)
        driver.execute_many_sync(connection, _INSERT_SQL, params)
    decisions = session.info.pop(_ROUTING, None)
    if decisions:
        connection = session.connection()
        params = _routing_params(connection.dialect.name, decisions)
        driver.execute_many_sync(connection, _ROUTING_SQL, params)


@sa_event.listens_for(Session, "after_commit")
def _forget_rows(session: Session) -> None:
    session.info.pop(_LOCKED, None)  # the locks ended with the transaction


@sa_event.listens_for(Session, "after_rollback")
def _drop_deferred(session: Session) -> None:
    session.info.pop(_ROWS, None)
    session.info.pop(_ROUTING, None)
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
_SAVED_FIELDS = [
    name for name in _ROW_FIELDS if name not in ("id", "type", "attempt", "workflow_step_id")
]
_ROW_TIMES = frozenset(
    ("lease_expires_at", "assigned_at", "started_at", "finished_at", "available_at", "updated_at")
)
_ROW_JSON = frozenset(("result", "error"))
_SAVE_SQL = driver.update_sql("tasks", _SAVED_FIELDS)


_READ_TIME_AT = [i for i, n in enumerate(_ROW_FIELDS) if n in _ROW_TIMES]
_READ_JSON_AT = [i for i, n in enumerate(_ROW_FIELDS) if n in _ROW_JSON]
_SAVE_TIME_AT = [i for i, n in enumerate(_SAVED_FIELDS) if n in _ROW_TIMES]
_SAVE_JSON_AT = [i for i, n in enumerate(_SAVED_FIELDS) if n in _ROW_JSON]
_SAVED_VALUES = attrgetter(*_SAVED_FIELDS)


def _rows_from_driver(dialect: str, raws: Sequence[Sequence[Any]]) -> list[TaskRow]:
    """Report rows from the driver's values. A batch's rows share a few instants
    (tasks submitted, claimed or renewed together): each is parsed once."""
    values = driver.values_for(dialect)
    times: dict[Any, Any] = {None: None}
    rows = []
    for raw in raws:
        fields_in_order = list(raw)
        for i in _READ_TIME_AT:
            v = fields_in_order[i]
            if v not in times:
                times[v] = values.read_time(v)
            fields_in_order[i] = times[v]
        for i in _READ_JSON_AT:
            fields_in_order[i] = values.read_json(fields_in_order[i])
        rows.append(TaskRow(*fields_in_order))
    return rows


def _rows_of(session: AsyncSession | Session) -> dict[str, TaskRow]:
    rows: dict[str, TaskRow] = session.info.setdefault(_LOCKED, {})
    return rows


async def lock_rows(session: AsyncSession, ids: Sequence[str]) -> None:
    """Lock and load the report rows of these tasks with one statement, in id
    order (the order every batch locks in); ``get_row`` then costs no query."""
    wanted = sorted(set(ids) - set(_rows_of(session)))
    if not wanted:
        return
    connection = await session.connection()
    dialect = connection.dialect.name
    sql, params = driver.select_by_keys(dialect, "tasks", _ROW_FIELDS, wanted, lock=True)
    rows = _rows_of(session)
    fetched = await driver.fetch(connection, sql, params)
    for row in _rows_from_driver(dialect, fetched):
        rows[row.id] = row


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


def _save_params(session: AsyncSession | Session, dialect: str) -> list[tuple[Any, ...]]:
    dirty: dict[str, TaskRow] = session.info.pop(_DIRTY, None) or {}
    to = _Converter(dialect)
    return [
        (*to.convert(list(_SAVED_VALUES(row)), _SAVE_TIME_AT, _SAVE_JSON_AT), row.id)
        for _, row in sorted(dirty.items())
    ]


async def save_rows(session: AsyncSession) -> None:
    """Write the changed report rows now (one executemany UPDATE)."""
    if session.info.get(_DIRTY):
        connection = await session.connection()
        params = _save_params(session, connection.dialect.name)
        await driver.execute_many(connection, _SAVE_SQL, params)


@at_commit(20)
def _save_rows_at_commit(session: Session) -> None:
    if session.info.get(_DIRTY):
        connection = session.connection()
        params = _save_params(session, connection.dialect.name)
        driver.execute_many_sync(connection, _SAVE_SQL, params)


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
    _T.c.preferred_only,
    _T.c.file_ids,
    _T.c.deadline,
    _T.c.timeout_seconds,
    _T.c.attempt,
    _T.c.workflow_step_id,
    _T.c.workspace_id,
    _T.c.workspace_mode,
    _T.c.agent_type,
)


# The head of the queue read off ix_tasks_queue in its order (priority, then
# age), the rows locked. Neither database may choose another plan: without
# statistics, or with statistics from when few tasks waited, the planner would
# rather read every pending task and sort them, so a claim would cost time in
# proportion to the depth of the queue. SQLite is told the index (INDEXED BY);
# PostgreSQL reads through ymera_queue_head (migration 0019), a function that
# plans its query with sorting and bitmap scans off.
_CLAIM_NAMES = ", ".join(c.name for c in _CLAIM_COLUMNS)
_PENDING_WINDOW_SQLITE = (
    text(  # the column names are this module's constants
        f"SELECT {_CLAIM_NAMES} "  # noqa: S608
        "FROM tasks INDEXED BY ix_tasks_queue "
        "WHERE status = 'PENDING' AND available_at <= :now "
        "ORDER BY priority DESC, created_at, id LIMIT :limit OFFSET :offset"
    )
    .bindparams(bindparam("now", type_=_T.c.available_at.type))
    .columns(*_CLAIM_COLUMNS)
)
_PENDING_WINDOW_PG = (
    text(f"SELECT {_CLAIM_NAMES} FROM ymera_queue_head(:now, :limit, :offset)")  # noqa: S608
    .bindparams(
        bindparam("now", type_=_T.c.available_at.type),
        bindparam("limit", type_=Integer),
        bindparam("offset", type_=Integer),
    )
    .columns(*_CLAIM_COLUMNS)
)


async def pending_window(
    session: AsyncSession, *, now: datetime, limit: int, offset: int = 0
) -> Sequence[Any]:
    """The head of the queue, locked (SKIP LOCKED on PostgreSQL so replicas share
    it): rows of the columns claiming needs, not ORM objects."""
    connection = await session.connection()
    stmt = _PENDING_WINDOW_SQLITE if connection.dialect.name == "sqlite" else _PENDING_WINDOW_PG
    params = {"now": now, "limit": limit, "offset": offset}
    return (await connection.execute(stmt, params)).all()


async def assign_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Apply assignments (each a dict with the task's ``id``, the new values and
    the ``routing`` explanation) in one batched UPDATE by primary key, and keep
    each explanation in ``task_routing``; the rows are locked by the caller."""
    if rows:
        connection = await session.connection()
        values = driver.values_for(connection.dialect.name)
        times: dict[datetime, Any] = {}

        def time(value: datetime) -> Any:
            if value not in times:
                times[value] = values.time(value)
            return times[value]

        params = [
            (
                row["status"],
                row["attempt"],
                row["agent_id"],
                row["lease_token"],
                time(row["lease_expires_at"]),
                time(row["assigned_at"]),
                time(row["updated_at"]),
                row["id"],
            )
            for row in rows
        ]
        await driver.execute_many(connection, _ASSIGN_SQL, params)
        decisions = [
            (row["id"], row["attempt"], time(row["assigned_at"]), values.json(row["routing"]))
            for row in rows
        ]
        await driver.execute_many(connection, _ROUTING_SQL, decisions)


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


async def latest_routing(session: AsyncSession, task_id: str) -> TaskRouting | None:
    """The explanation of the task's most recent assignment."""
    stmt = (
        select(TaskRouting)
        .where(TaskRouting.task_id == task_id)
        .order_by(TaskRouting.attempt.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
