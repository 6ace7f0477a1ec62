"""The routing vocabulary every strategy shares: an agent slot, a task view, a
decision, and the Router protocol the dispatcher calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Statuses routing never sends work to (the rest, BUSY included, are routable
# capacity permitting: BUSY only means the agent is at its max concurrency).
UNROUTABLE_STATUSES = frozenset({"OFFLINE", "ERROR", "PAUSED"})


@dataclass
class AgentSlot:
    """An agent the dispatcher may assign to now."""

    agent_id: str
    name: str
    capabilities: dict[str, float]
    load: int
    max_concurrency: int
    task_types: frozenset[str] | None = None  # None: any type
    agent_type: str | None = None
    status: str = "IDLE"
    circuit_open: bool = False
    ejected: bool = False  # by outlier detection on task outcomes

    @property
    def free(self) -> int:
        return max(0, self.max_concurrency - self.load)


@dataclass
class TaskView:
    id: str
    type: str
    required_capabilities: list[str]
    preferred_agents: list[str] = field(default_factory=list)
    excluded_agents: list[str] = field(default_factory=list)
    # Only the preferred agents may take the task (else they only go first).
    preferred_only: bool = False
    agent_type: str | None = None  # only agents of this type (None: any)


@dataclass
class Decision:
    agent_id: str | None
    explanation: dict[str, Any]


class Router(Protocol):
    @property
    def name(self) -> str: ...

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision: ...
