"""Workflow definitions, runs and steps as the API takes and returns them.

The shape of a definition is checked here (types, bounds, unknown fields);
its meaning (references, cycles, reachability, expressions) in
:mod:`ymera.workflows.plan`, which names the JSON path of each problem.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ymera.agents.schemas import AgentType
from ymera.tasks.schemas import TYPE_PATTERN, RetryPolicy
from ymera.workflows.status import RunStatus, StepStatus

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Strategy(StrEnum):
    SEQUENTIAL = "SEQUENTIAL"
    PARALLEL = "PARALLEL"
    CONDITIONAL = "CONDITIONAL"
    PIPELINE = "PIPELINE"
    CONSENSUS = "CONSENSUS"


class Join(StrEnum):
    ALL = "all"
    ANY = "any"
    QUORUM = "quorum"


class FailurePolicy(StrEnum):
    FAIL_FAST = "fail_fast"
    CONTINUE = "continue"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSelector(_Strict):
    """Which agents may run a step: all the given parts apply."""

    type: AgentType | None = Field(default=None, description="Only agents of this type.")
    capabilities: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Only agents with every one of these capabilities.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Prefer this agent (by name or id): it gets the task whenever it has a "
        "free slot; the rest of the selector decides who else may take it.",
    )


class TaskTemplate(_Strict):
    """A task to run: its type, who may run it, its input template, retry and timeout."""

    task_type: str = Field(pattern=TYPE_PATTERN, examples=["review"])
    agent: AgentSelector | None = None
    input: dict[str, Any] | str | None = Field(
        default=None,
        description='The task\'s input: a JSON template ("${ expression }" strings are '
        "replaced); it must render to an object. Default: the run's input (in a PIPELINE, "
        "the previous step's output).",
    )
    retry: RetryPolicy | None = Field(default=None, description="Default: the server's.")
    timeout: float | None = Field(
        default=None, gt=0, le=7 * 86_400, description="Execution timeout per attempt, seconds."
    )
    priority: int = Field(default=5, ge=0, le=9)


class Decide(_Strict):
    """How a CONSENSUS picks its answer."""

    method: Literal["majority", "best_score"]
    field: str = Field(
        min_length=1,
        max_length=1000,
        description="Expression over each vote's output (e.g. `verdict`, `score`): the value "
        "voted for (majority) or the score to maximise (best_score).",
    )


class Branch(_Strict):
    name: str = Field(pattern=ID_PATTERN)
    when: str | None = Field(
        default=None,
        max_length=1000,
        description="Condition (an expression); none: the default branch, which must be last.",
    )
    steps: list[Node] = Field(min_length=1, max_length=50)


class Node(_Strict):
    """A step (with `task_type`) or a group of steps (with `strategy`)."""

    id: str = Field(pattern=ID_PATTERN, description="Unique in the workflow.")
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Top-level nodes that must succeed before this one starts.",
    )
    # a step
    task_type: str | None = Field(default=None, pattern=TYPE_PATTERN)
    agent: AgentSelector | None = None
    input: dict[str, Any] | str | None = Field(
        default=None,
        description="Input template (see TaskTemplate.input).",
    )
    retry: RetryPolicy | None = None
    timeout: float | None = Field(default=None, gt=0, le=7 * 86_400)
    priority: int | None = Field(default=None, ge=0, le=9)
    on_failure: TaskTemplate | None = Field(
        default=None,
        description="Fallback run when the step fails; its output stands in for the step's.",
    )
    # a group
    strategy: Strategy | None = None
    steps: list[Node] | None = Field(default=None, max_length=50)
    join: Join | None = Field(default=None, description="PARALLEL: all (default), any, quorum.")
    quorum: int | None = Field(default=None, ge=1, le=50, description="PARALLEL join=quorum.")
    branches: list[Branch] | None = Field(default=None, max_length=20)
    task: TaskTemplate | None = Field(default=None, description="CONSENSUS: the task to ask.")
    agents: int | None = Field(default=None, ge=2, le=20, description="CONSENSUS: how many.")
    decide: Decide | None = None


class WorkflowCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN, examples=["code-review"])
    description: str = Field(default="", max_length=2000)
    failure_policy: FailurePolicy = Field(
        default=FailurePolicy.FAIL_FAST,
        description="fail_fast: the first failure fails the run and cancels the rest; "
        "continue: what does not depend on the failure goes on.",
    )
    steps: list[Node] = Field(min_length=1, max_length=200)
    output: dict[str, Any] | str | None = Field(
        default=None,
        description="Template of the run's output. Default: the outputs of the last steps.",
    )


class WorkflowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    version: int
    description: str
    definition: dict[str, Any]
    created_by: str
    created_at: datetime


class RunCreate(_Strict):
    workflow: str = Field(
        min_length=1,
        max_length=100,
        description="A workflow name (its latest version) or a workflow id (that version).",
    )
    input: dict[str, Any] = Field(default_factory=dict)


class StepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    key: str
    kind: str = Field(description="step, group, vote (of a CONSENSUS) or fallback.")
    parent_key: str | None
    status: StepStatus
    input: dict[str, Any] | None
    output: Any | None
    error: dict[str, Any] | None
    detail: dict[str, Any]
    task_id: str | None
    agent_id: str | None
    tasks: list[str]
    started_at: datetime | None
    finished_at: datetime | None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    workflow_id: str
    workflow_name: str
    workflow_version: int
    status: RunStatus
    input: dict[str, Any]
    output: Any | None
    error: dict[str, Any] | None
    retries: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class RunDetail(RunOut):
    steps: list[StepOut]


Branch.model_rebuild()
Node.model_rebuild()
