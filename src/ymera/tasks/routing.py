"""The routing interface the dispatcher uses, with the default policy:
capability match, then least loaded (the Routing issue adds the others).

A decision carries its explanation, kept with the task: the candidates with
their score parts, the chosen agent and why, and the rejected agents with why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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
    agent_type: str | None = None  # only agents of this type (None: any)


@dataclass
class Decision:
    agent_id: str | None
    explanation: dict[str, Any]


class Router(Protocol):
    name: str

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision: ...


def rejection(task: TaskView, agent: AgentSlot) -> str | None:
    """Why ``agent`` cannot take ``task`` now; None when it can."""
    if agent.task_types is not None and task.type not in agent.task_types:
        return f"has no handler for task type {task.type!r}"
    if agent.agent_id in task.excluded_agents or agent.name in task.excluded_agents:
        return "excluded by the task's routing hints"
    if task.agent_type is not None and agent.agent_type != task.agent_type:
        return f"not a {task.agent_type} agent"
    missing = [c for c in task.required_capabilities if c not in agent.capabilities]
    if missing:
        return f"missing capabilities: {', '.join(missing)}"
    if agent.free <= 0:
        return "no free capacity"
    return None


class CapabilityLeastLoaded:
    """Eligible agents by capability; preferred agents first; then the lowest
    load ratio; ties go to the highest mean proficiency on the required skills."""

    name = "capability_least_loaded"

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision:
        rejected: list[dict[str, Any]] = []
        scored: list[tuple[tuple[float, float, float, str], AgentSlot, dict[str, Any]]] = []
        for agent in agents:
            reason = rejection(task, agent)
            if reason is not None:
                rejected.append({"agent_id": agent.agent_id, "name": agent.name, "reason": reason})
                continue
            preferred = (
                agent.agent_id in task.preferred_agents or agent.name in task.preferred_agents
            )
            load_ratio = agent.load / agent.max_concurrency
            skills = [agent.capabilities[c] for c in task.required_capabilities]
            proficiency = sum(skills) / len(skills) if skills else 0.0
            parts = {
                "preferred": preferred,
                "load_ratio": round(load_ratio, 4),
                "proficiency": round(proficiency, 4),
            }
            key = (0.0 if preferred else 1.0, load_ratio, -proficiency, agent.name)
            scored.append((key, agent, parts))
        if not scored:
            return Decision(
                None,
                {"strategy": self.name, "chosen": None, "candidates": [], "rejected": rejected},
            )
        scored.sort(key=lambda item: item[0])
        _, best, best_parts = scored[0]
        why = "preferred by the task" if best_parts["preferred"] else "least loaded eligible agent"
        return Decision(
            best.agent_id,
            {
                "strategy": self.name,
                "chosen": {"agent_id": best.agent_id, "name": best.name, "why": why},
                "candidates": [
                    {"agent_id": a.agent_id, "name": a.name, "score": p} for _, a, p in scored
                ],
                "rejected": rejected,
            },
        )
