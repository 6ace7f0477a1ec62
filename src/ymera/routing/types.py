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


class Round(Protocol):
    """One claim's decisions over one set of agents (the dispatcher's loop over
    the queue's head): what every decision needs of the agents is prepared
    once, and the round keeps their loads as it assigns."""

    def choose(self, task: TaskView) -> Decision: ...

    def took(self, agent_id: str) -> None:
        """The agent was given the task just chosen for it (one more of load)."""

    def full(self, agent_id: str) -> None:
        """The agent has no room left (another replica filled it)."""


class Router(Protocol):
    @property
    def name(self) -> str: ...

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision: ...

    def round(self, agents: list[AgentSlot]) -> Round: ...


class SlotsRound:
    """A round that asks its router's :meth:`Router.choose` at each decision,
    with the agents that still have room (a router with nothing to prepare)."""

    def __init__(self, router: Router, agents: list[AgentSlot]) -> None:
        self.router = router
        self.agents = agents
        self.by_id = {a.agent_id: a for a in agents}

    def choose(self, task: TaskView) -> Decision:
        return self.router.choose(task, [a for a in self.agents if a.free > 0])

    def took(self, agent_id: str) -> None:
        self.by_id[agent_id].load += 1

    def full(self, agent_id: str) -> None:
        slot = self.by_id[agent_id]
        slot.load = max(slot.load, slot.max_concurrency)
