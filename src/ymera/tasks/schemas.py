from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ymera.agents.schemas import AgentType
from ymera.tasks.status import TaskStatus

TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$"
WorkspaceMode = Literal["apply", "propose"]


class RetryPolicy(BaseModel):
    max_attempts: int = Field(default=3, ge=1, le=100)
    initial: float = Field(default=1.0, ge=0, le=3600, description="First backoff, seconds.")
    factor: float = Field(default=2.0, ge=1, le=10)
    cap: float = Field(default=300.0, ge=0, le=86_400, description="Longest backoff, seconds.")


class TaskCreate(BaseModel):
    type: str = Field(pattern=TYPE_PATTERN, examples=["summarise"])
    input: dict[str, Any] = Field(default_factory=dict)
    required_capabilities: list[str] = Field(default_factory=list, max_length=20)
    priority: int = Field(default=5, ge=0, le=9, description="9 is most urgent.")
    deadline: datetime | None = Field(
        default=None, description="Fail the task if it has not finished by then."
    )
    timeout: float | None = Field(
        default=None, gt=0, le=7 * 86_400, description="Execution timeout per attempt, seconds."
    )
    retry: RetryPolicy | None = Field(default=None, description="Default: the type's policy.")
    file_ids: list[str] = Field(default_factory=list, max_length=100)
    preferred_agents: list[str] = Field(default_factory=list, max_length=50)
    excluded_agents: list[str] = Field(default_factory=list, max_length=50)
    preferred_only: bool = Field(
        default=False,
        description="Only the preferred agents (ids or names) may take the task: it waits "
        "for one of them to be free instead of going to another agent. Needs "
        "`preferred_agents` (else 422 `invalid_routing_hints`); when none of them is "
        "registered: 422 `unknown_agent`.",
    )
    workflow_step_id: str | None = Field(default=None, max_length=36)
    agent_type: AgentType | None = Field(
        default=None, description="Only an agent of this type may take the task."
    )
    workspace_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="A workspace the agent may edit while it holds the task (a code task; "
        "the submitter needs workspaces:read). Unknown: 422 `unknown_workspace`.",
    )
    workspace_mode: WorkspaceMode = Field(
        default="propose",
        description="With a workspace: `propose` records the agent's edits as PROPOSED, for "
        "a person to approve and apply; `apply` writes them at once (recorded, revertible).",
    )

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline must include a timezone")
        return value


class TaskBatchCreate(BaseModel):
    tasks: list[TaskCreate] = Field(min_length=1, max_length=1000)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    status: TaskStatus
    priority: int
    input: dict[str, Any]
    required_capabilities: list[str]
    file_ids: list[str]
    preferred_agents: list[str]
    excluded_agents: list[str]
    preferred_only: bool
    attempt: int
    max_attempts: int
    agent_id: str | None
    deadline: datetime | None
    timeout_seconds: float | None
    available_at: datetime
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: float | None
    progress_message: str | None
    feedback_score: float | None
    workflow_step_id: str | None
    agent_type: str | None
    workspace_id: str | None
    workspace_mode: WorkspaceMode | None = Field(description="Null for a task without a workspace.")
    idempotency_key: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class TaskRef(BaseModel):
    """A submitted task in a minimal answer (``Prefer: return=minimal``)."""

    id: str
    status: TaskStatus


class FeedbackIn(BaseModel):
    score: float = Field(ge=0, le=1)
    comment: str | None = Field(default=None, max_length=2000)


class CallbackIn(BaseModel):
    """An http agent reporting the outcome of a task it accepted with 202."""

    attempt: int = Field(ge=1)
    status: Literal["succeeded", "failed"]
    output: dict[str, Any] | None = None
    error_message: str | None = Field(default=None, max_length=2000)
    retryable: bool = True
