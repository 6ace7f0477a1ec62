"""least_loaded: the lowest load ratio (load / capacity); ties go to the highest
proficiency on the required capabilities, then to registration order.

The default policy, on the dispatcher's hot path: :meth:`LeastLoaded.choose`
ranks a short slot list in plain Python (a decision costs microseconds, no
arrays to build); :meth:`select` ranks a :class:`Fleet` as every strategy does.
Both apply the shared filter and explain alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ymera.routing.filter import rejection
from ymera.routing.fleet import Fleet
from ymera.routing.strategies.base import MAX_LISTED, Ranking, Strategy, load_ratio
from ymera.routing.types import AgentSlot, Decision, Round, SlotsRound, TaskView

WHY = "least loaded eligible agent"


class LeastLoaded(Strategy):
    name = "least_loaded"

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        ratio = load_ratio(fleet, rows)
        prof = fleet.proficiency(rows, task.required_capabilities)
        chosen = int(np.lexsort((-prof, ratio))[0])
        return Ranking(
            chosen,
            {"score": 1.0 - ratio + 1e-3 * prof, "load_ratio": ratio, "proficiency": prof},
            WHY,
        )

    def round(self, agents: list[AgentSlot]) -> Round:
        """Plain Python at each decision over the slots with room (no arrays)."""
        return SlotsRound(self, agents)

    def choose(self, task: TaskView, agents: list[AgentSlot]) -> Decision:
        rejected: list[dict[str, Any]] = []
        scored: list[tuple[tuple[float, float, int], AgentSlot, dict[str, Any]]] = []
        for i, agent in enumerate(agents):
            reason = rejection(task, agent)
            if reason is not None:
                rejected.append({"agent_id": agent.agent_id, "name": agent.name, "reason": reason})
                continue
            ratio = agent.load / max(agent.max_concurrency, 1)
            skills = [agent.capabilities[c] for c in task.required_capabilities]
            prof = sum(skills) / len(skills) if skills else 0.0
            parts = {
                "score": round(1.0 - ratio + 1e-3 * prof, 4),
                "load_ratio": round(ratio, 4),
                "proficiency": round(prof, 4),
            }
            scored.append(((ratio, -prof, i), agent, parts))
        preferred = False
        if task.preferred_agents and scored:
            wanted = set(task.preferred_agents)
            mine = [s for s in scored if s[1].agent_id in wanted or s[1].name in wanted]
            if mine:
                scored, preferred = mine, True
        out: dict[str, Any] = {"strategy": self.name, "chosen": None}
        if scored:
            scored.sort(key=lambda item: item[0])
            best = scored[0][1]
            why = f"preferred by the task's routing hints; {WHY}" if preferred else WHY
            out["chosen"] = {"agent_id": best.agent_id, "name": best.name, "why": why}
        out["candidates"] = [
            {"agent_id": a.agent_id, "name": a.name, "score": p} for _, a, p in scored[:MAX_LISTED]
        ]
        out["candidates_total"] = len(scored)
        out["rejected"] = rejected[:MAX_LISTED]
        out["rejected_total"] = len(rejected)
        return Decision(scored[0][1].agent_id if scored else None, out)
