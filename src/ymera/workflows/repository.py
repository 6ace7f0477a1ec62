"""Every query on the workflow tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ymera.models.workflows import Workflow, WorkflowRun, WorkflowStep


def add(session: AsyncSession, obj: Any) -> None:
    session.add(obj)


async def latest_version(session: AsyncSession, name: str) -> int:
    stmt = select(func.max(Workflow.version)).where(Workflow.name == name)
    return int((await session.execute(stmt)).scalar() or 0)


async def get_workflow(session: AsyncSession, workflow_id: str) -> Workflow | None:
    return await session.get(Workflow, workflow_id)


async def latest_by_name(session: AsyncSession, name: str) -> Workflow | None:
    stmt = select(Workflow).where(Workflow.name == name).order_by(Workflow.version.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_workflows(
    session: AsyncSession,
    *,
    name: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Workflow]:
    stmt = select(Workflow)
    if name is not None:
        stmt = stmt.where(Workflow.name == name)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(
            or_(Workflow.created_at < at, and_(Workflow.created_at == at, Workflow.id < last_id))
        )
    stmt = stmt.order_by(Workflow.created_at.desc(), Workflow.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def get_run(
    session: AsyncSession, run_id: str, *, for_update: bool = False
) -> WorkflowRun | None:
    stmt = select(WorkflowRun).where(WorkflowRun.id == run_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_runs(
    session: AsyncSession,
    *,
    created_by: str | None,
    statuses: Sequence[str],
    workflow: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[WorkflowRun]:
    stmt = select(WorkflowRun)
    if created_by is not None:
        stmt = stmt.where(WorkflowRun.created_by == created_by)
    if statuses:
        stmt = stmt.where(WorkflowRun.status.in_(list(statuses)))
    if workflow is not None:
        stmt = stmt.where(
            or_(WorkflowRun.workflow_name == workflow, WorkflowRun.workflow_id == workflow)
        )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(
            or_(
                WorkflowRun.created_at < at,
                and_(WorkflowRun.created_at == at, WorkflowRun.id < last_id),
            )
        )
    stmt = stmt.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def run_steps(session: AsyncSession, run_id: str) -> Sequence[WorkflowStep]:
    """A run's rows in plan order, read afresh (another transaction may have moved them)."""
    stmt = (
        select(WorkflowStep)
        .where(WorkflowStep.run_id == run_id)
        .order_by(WorkflowStep.position)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def step_run_id(session: AsyncSession, step_id: str) -> str | None:
    stmt = select(WorkflowStep.run_id).where(WorkflowStep.id == step_id)
    return (await session.execute(stmt)).scalar_one_or_none()
