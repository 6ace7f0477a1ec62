"""A task's status changes and what follows them: the transition checked and
made, its event recorded, the listeners told when the task ends, and the
agent's metrics fed with an attempt's outcome (shared by the submission side,
``ymera.tasks.service``, and the agents' side, ``ymera.tasks.leases``)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.agents import metrics as agent_metrics
from ymera.events.outbox import record_event
from ymera.models.tasks import Task
from ymera.tasks import hooks
from ymera.tasks.repository import TaskRow
from ymera.tasks.status import TaskStatus, check_transition

T = TaskStatus


def record_transition(
    session: AsyncSession, task: Task | TaskRow, previous: str | None, actor: str | None
) -> None:
    data: dict[str, Any] = {
        "from": previous,
        "to": task.status,
        "type": task.type,
        "attempt": task.attempt,
        "agent_id": task.agent_id,
    }
    if task.workflow_step_id:
        data["workflow_step_id"] = task.workflow_step_id
    if task.status in (T.FAILED, T.DEAD) and task.error:
        data["error"] = task.error.get("message")
    record_event(
        session,
        type=f"task.{task.status.lower()}",
        resource_type="task",
        resource_id=task.id,
        data=data,
        actor=actor,
    )


async def notify_finished(session: AsyncSession, task: Task | TaskRow, now: datetime) -> None:
    """Tell the listeners (workflows, chat) that a task ended, in this transaction."""
    if hooks.has_listeners():
        await hooks.notify_finished(
            session,
            hooks.TaskFinished(
                id=task.id,
                type=task.type,
                status=task.status,
                attempt=task.attempt,
                agent_id=task.agent_id,
                workflow_step_id=task.workflow_step_id,
                result=task.result,
                error=task.error,
                at=now,
            ),
        )


def move(task: Task | TaskRow, target: TaskStatus, now: datetime) -> str:
    previous = task.status
    check_transition(T(previous), target)
    task.status = target.value
    task.updated_at = now
    return previous


def backoff_seconds(task: Task | TaskRow, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal" jitter (a random wait between half and all of
    the capped delay) for the attempt that just failed."""
    exp = task.retry_initial * task.retry_factor ** max(0, task.attempt - 1)
    ceiling = min(task.retry_cap, exp)
    return (rng or random).uniform(ceiling / 2, ceiling)


async def record_outcome(
    session: AsyncSession,
    task: Task | TaskRow,
    *,
    agent_id: str | None,
    success: bool,
    now: datetime,
) -> None:
    """Feed the agent's metrics (and so routing) with one attempt's outcome."""
    if agent_id is None:
        return
    began = task.started_at or task.assigned_at or now
    latency = max(0.0, (now - began).total_seconds())
    await agent_metrics.record_outcome(
        session,
        agent_id=agent_id,
        task_type=task.type,
        success=success,
        latency_seconds=latency,
        now=now,
    )
    await hooks.notify_outcome(
        session,
        hooks.Outcome(agent_id, task.type, now, success=success, latency=latency),
    )
