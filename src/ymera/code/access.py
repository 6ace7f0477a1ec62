"""Agents in workspaces (code tasks).

A task may carry a workspace. An agent (an agent key's principal) may use the
workspace API only on the workspace of a task it holds now (ASSIGNED or RUNNING),
and only as that task allows: with ``workspace_mode`` "propose" its changes are
recorded as PROPOSED edits (a person approves and applies them), with "apply" they
are written at once. Either way they are recorded as the agent's edits, grouped in
the task's edit session. Users are not affected by any of this.

The request names its task in the ``X-Ymera-Task`` header (the worker SDK always
sends it); without it, the task the agent was assigned last on that workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ymera.auth.principal import Principal
from ymera.errors import Forbidden

TASK_HEADER = "X-Ymera-Task"


class WorkspaceNotAssigned(Forbidden):
    """An agent used a workspace without holding a task that carries it."""

    code = "workspace_not_assigned"


class AgentNotAllowed(Forbidden):
    """Something only people do (create or delete workspaces, open sessions, write
    directly in a task whose mode is "propose")."""

    code = "agent_not_allowed"


@dataclass(frozen=True)
class TaskGrant:
    """The task through which an agent acts on a workspace."""

    task_id: str
    task_type: str
    mode: str  # "apply" | "propose"

    @property
    def propose(self) -> bool:
        return self.mode != "apply"


def refuse_agent(principal: Principal, action: str) -> None:
    if principal.kind == "agent":
        raise AgentNotAllowed(f"Agents cannot {action}")


async def grant_for(
    session: AsyncSession, *, principal: Principal, workspace_id: str, task_id: str | None
) -> TaskGrant | None:
    """None for users; for an agent, the task it holds that carries the workspace
    (403 ``workspace_not_assigned`` when there is none)."""
    if principal.kind != "agent":
        return None
    # Imported here: the tasks domain imports the code domain (tasks carry workspaces).
    from ymera.tasks import service as tasks_service

    held = None
    if principal.agent_id:
        held = await tasks_service.held_workspace_task(
            session, agent_id=principal.agent_id, workspace_id=workspace_id, task_id=task_id
        )
    if held is None:
        task = f"task {task_id}" if task_id else "a task"
        raise WorkspaceNotAssigned(
            f"This agent may use workspace {workspace_id} only while it holds {task} "
            "(ASSIGNED or RUNNING) that carries the workspace",
            workspace_id=workspace_id,
            task_id=task_id,
        )
    return TaskGrant(held.id, held.type, held.workspace_mode)


async def assigned_workspace_ids(session: AsyncSession, *, principal: Principal) -> list[str]:
    """The workspaces an agent may use now (those of the tasks it holds)."""
    from ymera.tasks import service as tasks_service

    if not principal.agent_id:
        return []
    return await tasks_service.held_workspace_ids(session, agent_id=principal.agent_id)


def refuse_direct_write(grant: TaskGrant | None, action: str) -> None:
    """In a "propose" task an agent's changes go through review: it may not write
    to the workspace any other way (revert, commit)."""
    if grant is not None and grant.propose:
        raise AgentNotAllowed(
            f"Task {grant.task_id} has workspace_mode 'propose': its agent's changes are "
            f"proposals for review, so the agent may not {action}",
            task_id=grant.task_id,
        )
