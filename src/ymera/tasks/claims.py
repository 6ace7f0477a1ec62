"""The dispatcher's side of the task engine: which queued tasks go to which
agents with free slots (``claim``), and tasks assigned as they are submitted
(``assign_new``). Each assignment gets a fresh attempt and an unguessable lease
token, which fences every later report (``ymera.tasks.leases``)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.events.outbox import record_event
from ymera.tasks import repository
from ymera.tasks.routing import AgentSlot, Round, Router, TaskView, rejection
from ymera.tasks.status import TaskStatus, check_transition

T = TaskStatus


@dataclass(frozen=True)
class ClaimedTask:
    """What delivering an assignment needs of its task."""

    id: str
    type: str
    priority: int
    input: dict[str, Any]
    file_ids: list[str]
    deadline: datetime | None
    timeout_seconds: float | None
    attempt: int
    lease_token: str
    workflow_step_id: str | None = None
    workspace_id: str | None = None
    workspace_mode: str | None = None


@dataclass(frozen=True)
class Assignment:
    task: ClaimedTask
    agent_id: str
    lease_expires_at: datetime


async def has_pending(session: AsyncSession, *, now: datetime) -> bool:
    """Is any task waiting now? (Cheap, read-only: lets dispatchers skip the claim.)"""
    return await repository.has_pending(session, now=now)


CLAIM_PAGES = 8


async def _queue_head(
    session: AsyncSession, *, now: datetime, want: int, by_id: dict[str, AgentSlot]
) -> list[Any]:
    """The head of the queue (priority, then age): ``want`` rows, then pages of
    ``want * 4`` more until ``want`` of them could be taken by some free agent,
    so tasks nobody can run now never hide those behind them; at most
    ``CLAIM_PAGES`` pages."""
    rows: list[Any] = []
    takeable = 0
    offset = 0
    # Whether some free agent could take a task depends only on its type,
    # required capabilities, exclusions, pin and agent type (agents do not change
    # meanwhile): decided once per such shape, not once per row.
    shapes: dict[tuple[Any, ...], bool] = {}
    for page in range(CLAIM_PAGES):
        size = want if page == 0 else want * 4
        window = await repository.pending_window(session, now=now, limit=size, offset=offset)
        offset += size
        rows.extend(window)
        for row in window:
            shape = (
                row.type,
                tuple(row.required_capabilities),
                tuple(row.excluded_agents),
                tuple(row.preferred_agents) if row.preferred_only else None,
                row.agent_type,
            )
            could = shapes.get(shape)
            if could is None:
                could = shapes[shape] = _could_take(row, by_id)
            takeable += could
        if len(window) < size or takeable >= want:
            break
    return rows


def _view(row: Any) -> TaskView:
    """What routing reads of a queued task (a row, or a new task's values)."""
    return TaskView(
        id=row.id,
        type=row.type,
        required_capabilities=list(row.required_capabilities),
        preferred_agents=list(row.preferred_agents),
        excluded_agents=list(row.excluded_agents),
        preferred_only=bool(row.preferred_only),
        agent_type=row.agent_type,
    )


def _could_take(row: Any, by_id: dict[str, AgentSlot]) -> bool:
    view = _view(row)
    return any(rejection(view, agent) is None for agent in by_id.values())


async def claim(
    session: AsyncSession,
    *,
    agents: list[AgentSlot],
    router: Router,
    now: datetime,
    lease_seconds: float,
    limit: int,
    exclusive: bool = False,
) -> list[Assignment]:
    """Assign queued tasks (priority, then age) to agents with free slots.

    Set-based: one locked read of the head of the queue (only the columns routing
    and delivery need) and one batched update for every assignment.
    ``exclusive``: only this caller assigns to these agents (workers connected to
    this replica), so their capacity is counted in memory and the agents' load
    moves once per batch; otherwise each assignment reserves a slot with a
    conditional update (agents several replicas share).
    """
    free = sum(a.free for a in agents)
    if free <= 0:
        return []
    want = min(limit, free)
    by_id = {a.agent_id: a for a in agents}
    assignments: list[Assignment] = []
    updates: list[dict[str, Any]] = []
    expires = now + timedelta(seconds=lease_seconds)
    check_transition(T.PENDING, T.ASSIGNED)
    head = await _queue_head(session, now=now, want=want, by_id=by_id)
    tokens = _lease_tokens(min(want, len(head)))
    round_ = router.round(agents)
    for row in head:
        if len(assignments) >= want:
            break
        picked = _pick(row, round_, now)
        if picked is None:
            continue
        agent_id, explanation = picked
        if not exclusive and not await agents_service.reserve_capacity(
            session, agent_id=agent_id, count=1
        ):
            round_.full(agent_id)
            continue
        round_.took(agent_id)
        task = _claimed(row, next(tokens))
        updates.append(
            {
                "id": task.id,
                "status": T.ASSIGNED.value,
                "attempt": task.attempt,
                "agent_id": agent_id,
                "lease_token": task.lease_token,
                "lease_expires_at": expires,
                "assigned_at": now,
                "updated_at": now,
                "routing": explanation,
            }
        )
        _record_assigned(session, task, agent_id)
        assignments.append(Assignment(task, agent_id, expires))
    await repository.assign_many(session, updates)
    if exclusive:
        _add_loads(session, assignments)
    return assignments


def assign_new(
    session: AsyncSession,
    *,
    rows: list[dict[str, Any]],
    agents: list[AgentSlot],
    router: Router,
    now: datetime,
    lease_seconds: float,
    limit: int,
) -> list[Assignment]:
    """Assign tasks being submitted in this unit of work, before they are written:
    for the group-commit writer when no older task waits (the new tasks are the
    queue), so each is inserted already ASSIGNED (its ``task.pending`` and
    ``task.assigned`` events both recorded) instead of inserted, read back and
    updated. ``rows`` are the deferred inserts (``repository.deferred_rows``);
    assigned ones are changed in place. Only for agents whose capacity the
    caller tracks (this replica's workers)."""
    free = sum(a.free for a in agents)
    if free <= 0 or not rows:
        return []
    want = min(limit, free)
    expires = now + timedelta(seconds=lease_seconds)
    check_transition(T.PENDING, T.ASSIGNED)
    assignments: list[Assignment] = []
    decisions: list[tuple[str, int, datetime, dict[str, Any]]] = []
    tokens = _lease_tokens(min(want, len(rows)))
    round_ = router.round(agents)
    # Claim order: priority (highest first), then submission order.
    for row in sorted(rows, key=lambda r: -int(r["priority"])):
        if len(assignments) >= want:
            break
        view = SimpleNamespace(**row)
        picked = _pick(view, round_, now)
        if picked is None:
            continue
        agent_id, explanation = picked
        round_.took(agent_id)
        task = _claimed(view, next(tokens))
        row.update(
            status=T.ASSIGNED.value,
            attempt=task.attempt,
            agent_id=agent_id,
            lease_token=task.lease_token,
            lease_expires_at=expires,
            assigned_at=now,
            updated_at=now,
        )
        decisions.append((task.id, task.attempt, now, explanation))
        _record_assigned(session, task, agent_id)
        assignments.append(Assignment(task, agent_id, expires))
    repository.defer_routing(session, decisions)
    _add_loads(session, assignments)
    return assignments


def _lease_tokens(count: int) -> Iterator[str]:
    """Lease tokens fence reports, so they must be unguessable: one read of the
    OS's randomness for a whole claim, 16 hex digits each."""
    pool = secrets.token_hex(8 * count)
    return (pool[i : i + 16] for i in range(0, len(pool), 16))


def _pick(row: Any, round_: Round, now: datetime) -> Any:
    """(agent id, explanation) for a queued task, or None when no free agent may
    take it now (or its deadline passed: the deadline sweeper fails it)."""
    if row.deadline is not None and row.deadline <= now:
        return None
    decision = round_.choose(_view(row))
    if decision.agent_id is None:
        return None
    return decision.agent_id, decision.explanation


def _claimed(row: Any, lease_token: str) -> ClaimedTask:
    return ClaimedTask(
        id=row.id,
        type=row.type,
        priority=row.priority,
        input=row.input,
        file_ids=list(row.file_ids),
        deadline=row.deadline,
        timeout_seconds=row.timeout_seconds,
        attempt=row.attempt + 1,
        lease_token=lease_token,
        workflow_step_id=row.workflow_step_id,
        workspace_id=row.workspace_id,
        workspace_mode=row.workspace_mode if row.workspace_id else None,
    )


def _record_assigned(session: AsyncSession, task: ClaimedTask, agent_id: str) -> None:
    data: dict[str, Any] = {
        "from": T.PENDING.value,
        "to": T.ASSIGNED.value,
        "type": task.type,
        "attempt": task.attempt,
        "agent_id": agent_id,
    }
    if task.workflow_step_id:
        data["workflow_step_id"] = task.workflow_step_id
    record_event(
        session,
        type="task.assigned",
        resource_type="task",
        resource_id=task.id,
        data=data,
        actor="dispatcher",
    )


def _add_loads(session: AsyncSession, assignments: list[Assignment]) -> None:
    counts: dict[str, int] = {}
    for a in assignments:
        counts[a.agent_id] = counts.get(a.agent_id, 0) + 1
    for agent_id, count in counts.items():
        agents_service.defer_load(session, agent_id=agent_id, count=count)
