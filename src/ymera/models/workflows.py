"""Workflow definitions (versioned), their runs, and the state of every step of a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ymera.db.base import Base, JSONType


class Workflow(Base):
    """One version of a workflow definition. Versions are immutable: creating a
    definition under a name that exists adds the next version."""

    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_workflows_name_version"),
        Index("ix_workflows_created_at", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column()


class WorkflowRun(Base):
    """One execution of a workflow version with an input."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_created", "created_at", "id"),
        Index("ix_workflow_runs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.id", ondelete="RESTRICT"), index=True
    )
    workflow_name: Mapped[str] = mapped_column(String(100))
    workflow_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    output: Mapped[Any | None] = mapped_column(JSONType, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    # What the steps' tasks inherit (the default retry policy when the run began).
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(80), index=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WorkflowStep(Base):
    """The state of one node of a run: a step, a group, a CONSENSUS vote or a
    step's fallback. A step runs as a task whose ``workflow_step_id`` is this
    row's id; ``task_id`` is its current task."""

    __tablename__ = "workflow_steps"
    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_workflow_steps_run_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    parent_key: Mapped[str | None] = mapped_column(String(100), default=None)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    output: Mapped[Any | None] = mapped_column(JSONType, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    task_id: Mapped[str | None] = mapped_column(String(36), default=None)
    agent_id: Mapped[str | None] = mapped_column(String(36), default=None)
    tasks: Mapped[list[str]] = mapped_column(JSONType, default=list)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column()
