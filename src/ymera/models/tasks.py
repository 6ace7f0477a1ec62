from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    desc,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, JSONText, JSONType


class Task(Base):
    """A unit of work, kept until it reaches a final state.

    ``attempt`` counts assignments; ``lease_token`` fences results: only the
    holder of the current (attempt, lease_token) may report on the task.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        # The dispatcher's queue: pending tasks in the order they are claimed
        # (priority, highest first, then age), so the head is read off the index
        # without sorting the whole queue.
        Index(
            "ix_tasks_queue",
            desc("priority"),
            "created_at",
            "id",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        Index("ix_tasks_status_created", "status", "created_at"),
        # A task has an agent once assigned: a pending task is in neither index.
        Index(
            "ix_tasks_agent_status",
            "agent_id",
            "status",
            postgresql_where=text("agent_id IS NOT NULL"),
            sqlite_where=text("agent_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_lease",
            "lease_expires_at",
            postgresql_where=text("status IN ('ASSIGNED', 'RUNNING')"),
            sqlite_where=text("status IN ('ASSIGNED', 'RUNNING')"),
        ),
        Index("ix_tasks_type_created", "type", "created_at"),
        # Most tasks belong to no workflow and carry no workspace: leaving them out
        # of these indexes saves two index writes per row written.
        Index(
            "ix_tasks_workflow_step_id",
            "workflow_step_id",
            postgresql_where=text("workflow_step_id IS NOT NULL"),
            sqlite_where=text("workflow_step_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_workspace_id",
            "workspace_id",
            postgresql_where=text("workspace_id IS NOT NULL"),
            sqlite_where=text("workspace_id IS NOT NULL"),
        ),
        # One request per (principal, key); unkeyed tasks (most) are left out, which
        # saves an index write per task row written.
        Index(
            "uq_tasks_idempotency",
            "created_by",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    required_capabilities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    file_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    preferred_agents: Mapped[list[str]] = mapped_column(JSONType, default=list)
    excluded_agents: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Only the preferred agents may take the task (it waits for one of them).
    preferred_only: Mapped[bool] = mapped_column(default=False, server_default=false())

    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retry_initial: Mapped[float] = mapped_column(Float, default=1.0)
    retry_factor: Mapped[float] = mapped_column(Float, default=2.0)
    retry_cap: Mapped[float] = mapped_column(Float, default=300.0)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    deadline: Mapped[datetime | None] = mapped_column(default=None)
    available_at: Mapped[datetime] = mapped_column()

    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    lease_token: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)

    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    idempotency_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(80))
    workflow_step_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # Only an agent of this type may take the task (null: any type).
    agent_type: Mapped[str | None] = mapped_column(String(20), default=None)
    # A code task: the workspace its agent may edit, and whether the agent's edits
    # are written at once ("apply") or proposed for review ("propose").
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), default=None
    )
    workspace_mode: Mapped[str | None] = mapped_column(String(10), default=None)

    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    progress_message: Mapped[str | None] = mapped_column(String(500), default=None)
    feedback_score: Mapped[float | None] = mapped_column(Float, default=None)
    feedback_comment: Mapped[str | None] = mapped_column(String(2000), default=None)

    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class TaskRouting(Base):
    """Why an attempt of a task went to its agent (the routing decision's
    explanation), one row per assignment. Kept apart from the task's row: the
    explanation is larger than the rest of a task, and the task's row is
    rewritten at every change of state.

    Written in the transaction that assigns the task, for a task that transaction
    holds locked (tasks are never deleted): no foreign key to check on every
    insert. The explanation is only ever read whole: plain JSON (migration 0022)."""

    __tablename__ = "task_routing"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    decided_at: Mapped[datetime] = mapped_column()
    decision: Mapped[dict[str, Any]] = mapped_column(JSONText)
