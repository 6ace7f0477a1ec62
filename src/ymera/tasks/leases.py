"""The agents' side of the task engine: an attempt's reports (accept, renew,
progress, complete, fail, release) and the sweepers' (expired leases, lost
agents, passed deadlines).

Every report from an agent is *fenced* by (task id, attempt, lease token): it
changes the task only when all three are current, so a late report from a
superseded attempt can never overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import service as agents_service
from ymera.models.tasks import Task
from ymera.tasks import repository
from ymera.tasks.repository import TaskRow
from ymera.tasks.service import LeaseRef, StaleLease, TaskNotFound
from ymera.tasks.status import TaskStatus
from ymera.tasks.transitions import (
    backoff_seconds,
    move,
    notify_finished,
    record_outcome,
    record_transition,
)

T = TaskStatus
log = structlog.get_logger("ymera.tasks")


async def _fenced(session: AsyncSession, ref: LeaseRef) -> TaskRow:
    """The task's report row, locked, if (attempt, lease token) are current; the
    caller's changes to it are saved with the unit of work."""
    task = await repository.get_row(session, ref.task_id)
    if task is None:
        raise TaskNotFound(f"Task {ref.task_id} not found")
    if (
        task.attempt != ref.attempt
        or task.lease_token != ref.lease_token
        or task.status not in (T.ASSIGNED, T.RUNNING)
    ):
        log.info(
            "stale_report",
            task_id=ref.task_id,
            attempt=ref.attempt,
            current_attempt=task.attempt,
            status=task.status,
        )
        raise StaleLease(
            f"Attempt {ref.attempt} of task {ref.task_id} is no longer current",
            current_attempt=task.attempt,
            status=task.status,
        )
    return task


async def accept(
    session: AsyncSession, *, ref: LeaseRef, now: datetime, lease_seconds: float
) -> TaskRow:
    task = await _fenced(session, ref)
    if task.status == T.ASSIGNED:
        previous = move(task, T.RUNNING, now)
        task.started_at = now
        record_transition(session, task, previous, task.agent_id)
    task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return task


async def renew(
    session: AsyncSession,
    *,
    agent_id: str,
    refs: Sequence[LeaseRef],
    now: datetime,
    lease_seconds: float,
) -> list[str]:
    """Extend the leases an agent still holds; returns the ids it no longer holds."""
    lost: list[str] = []
    tasks = {t.id: t for t in await repository.get_many(session, [r.task_id for r in refs])}
    for ref in refs:
        task = tasks.get(ref.task_id)
        if (
            task is None
            or task.agent_id != agent_id
            or task.attempt != ref.attempt
            or task.lease_token != ref.lease_token
            or task.status not in (T.ASSIGNED, T.RUNNING)
        ):
            lost.append(ref.task_id)
            continue
        task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return lost


async def progress(
    session: AsyncSession,
    *,
    ref: LeaseRef,
    pct: float | None,
    message: str | None,
    now: datetime,
    lease_seconds: float,
) -> TaskRow:
    task = await _fenced(session, ref)
    task.progress = pct
    task.progress_message = message[:500] if message else None
    task.lease_expires_at = now + timedelta(seconds=lease_seconds)
    task.updated_at = now
    return task


async def complete(
    session: AsyncSession, *, ref: LeaseRef, output: dict[str, Any], now: datetime
) -> TaskRow:
    task = await _fenced(session, ref)
    if task.status == T.ASSIGNED:  # result without a separate accept
        previous = move(task, T.RUNNING, now)
        task.started_at = now
        record_transition(session, task, previous, task.agent_id)
    previous = move(task, T.SUCCEEDED, now)
    task.result = output
    task.error = None
    task.finished_at = now
    task.lease_token = None
    task.lease_expires_at = None
    task.progress = 100.0
    await record_outcome(session, task, agent_id=task.agent_id, success=True, now=now)
    if task.agent_id:
        await agents_service.release_capacity(session, agent_id=task.agent_id, count=1)
    record_transition(session, task, previous, task.agent_id)
    await notify_finished(session, task, now)
    return task


async def fail(
    session: AsyncSession,
    *,
    ref: LeaseRef,
    error: dict[str, Any],
    retryable: bool,
    now: datetime,
) -> TaskRow:
    task = await _fenced(session, ref)
    agent_id = task.agent_id
    await _requeue_or_finish(session, task, now=now, error=error, retryable=retryable)
    if agent_id:
        await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return task


async def release(session: AsyncSession, *, ref: LeaseRef, now: datetime, reason: str) -> TaskRow:
    """The agent hands the task back (draining): re-queued at once, attempt not held against it."""
    task = await _fenced(session, ref)
    agent_id = task.agent_id
    previous = move(task, T.PENDING, now)
    task.max_attempts += 1  # a hand-back is not a failed attempt
    task.available_at = now
    task.lease_token = None
    task.lease_expires_at = None
    task.error = {"message": reason, "type": "released"}
    record_transition(session, task, previous, agent_id)
    if agent_id:
        await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return task


async def _requeue_or_finish(
    session: AsyncSession,
    task: Task | TaskRow,
    *,
    now: datetime,
    error: dict[str, Any],
    retryable: bool,
) -> None:
    await record_outcome(session, task, agent_id=task.agent_id, success=False, now=now)
    task.error = error
    task.lease_token = None
    task.lease_expires_at = None
    if not retryable:
        previous = move(task, T.FAILED, now)
        task.finished_at = now
    elif task.attempt >= task.max_attempts:
        previous = move(task, T.DEAD, now)
        task.finished_at = now
    else:
        previous = move(task, T.PENDING, now)
        task.available_at = now + timedelta(seconds=backoff_seconds(task))
    record_transition(session, task, previous, task.agent_id)
    if task.status != T.PENDING:
        await notify_finished(session, task, now)


async def requeue_expired(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[Task]:
    """The reaper: a lease that ran out counts as a failed attempt."""
    tasks = list(await repository.expired_leases(session, now=now, limit=limit))
    for task in tasks:
        agent_id = task.agent_id
        await _requeue_or_finish(
            session,
            task,
            now=now,
            error={"message": "lease expired (agent silent or gone)", "type": "lease_expired"},
            retryable=True,
        )
        if agent_id:
            await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return tasks


async def requeue_agent(
    session: AsyncSession, *, agent_id: str, now: datetime, reason: str
) -> list[Task]:
    """Hand back every task an agent holds (it went OFFLINE, or was force-deleted)."""
    tasks = list(await repository.active_for_agent(session, agent_id))
    for task in tasks:
        await _requeue_or_finish(
            session, task, now=now, error={"message": reason, "type": "agent_lost"}, retryable=True
        )
    if tasks:
        await agents_service.release_capacity(session, agent_id=agent_id, count=len(tasks))
    return tasks


async def fail_past_deadline(
    session: AsyncSession, *, now: datetime, limit: int = 500
) -> list[Task]:
    tasks = list(await repository.past_deadline(session, now=now, limit=limit))
    for task in tasks:
        agent_id = task.agent_id if task.status in (T.ASSIGNED, T.RUNNING) else None
        task.error = {"message": "deadline passed before the task finished", "type": "deadline"}
        task.lease_token = None
        task.lease_expires_at = None
        previous = move(task, T.FAILED, now)
        task.finished_at = now
        record_transition(session, task, previous, "system")
        await notify_finished(session, task, now)
        if agent_id:
            await agents_service.release_capacity(session, agent_id=agent_id, count=1)
    return tasks
