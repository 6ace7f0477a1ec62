"""The one eligibility filter every strategy shares.

An agent may take a task when: it handles the task's type, it is not excluded
by the task's routing hints, it is of the agent type the task asks for, it has
every required capability, its status is routable (not OFFLINE, ERROR or
PAUSED), its circuit is closed, outlier detection has not ejected it, and its
load is under its limit (capacity rule). Preferred agents (routing hints) that
pass go first: when any of them is eligible, only they are candidates; with
``preferred_only`` no other agent ever is (the task waits for one of them).

:func:`rejection` answers for one agent slot (the dispatcher's scans);
:func:`eligible` for a whole :class:`~ymera.routing.fleet.Fleet` at once, as
arrays: a reason code per agent (0: eligible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ymera.routing.fleet import Fleet, ShapeKey
from ymera.routing.types import UNROUTABLE_STATUSES, AgentSlot, TaskView

OK = 0
NO_HANDLER = 1
EXCLUDED = 2
WRONG_TYPE = 3
MISSING_CAPS = 4
NOT_ROUTABLE = 5
CIRCUIT_OPEN = 6
EJECTED = 7
NO_CAPACITY = 8
NOT_PREFERRED = 9


def rejection(task: TaskView, agent: AgentSlot) -> str | None:
    """Why ``agent`` cannot take ``task`` now; None when it can."""
    if agent.task_types is not None and task.type not in agent.task_types:
        return f"has no handler for task type {task.type!r}"
    if agent.agent_id in task.excluded_agents or agent.name in task.excluded_agents:
        return "excluded by the task's routing hints"
    if task.preferred_only and not (
        agent.agent_id in task.preferred_agents or agent.name in task.preferred_agents
    ):
        return "not one of the task's preferred agents (preferred_only)"
    if task.agent_type is not None and agent.agent_type != task.agent_type:
        return f"not a {task.agent_type} agent"
    missing = [c for c in task.required_capabilities if c not in agent.capabilities]
    if missing:
        return f"missing capabilities: {', '.join(missing)}"
    if agent.status in UNROUTABLE_STATUSES:
        return f"status {agent.status} is not routable"
    if agent.circuit_open:
        return "circuit open"
    if agent.ejected:
        return "ejected by outlier detection"
    if agent.free <= 0:
        return "no free capacity"
    return None


def reason_text(code: int, task: TaskView, fleet: Fleet, row: int) -> str:
    """The words for a reason code (the same as :func:`rejection`'s)."""
    if code == NO_HANDLER:
        return f"has no handler for task type {task.type!r}"
    if code == EXCLUDED:
        return "excluded by the task's routing hints"
    if code == NOT_PREFERRED:
        return "not one of the task's preferred agents (preferred_only)"
    if code == WRONG_TYPE:
        return f"not a {task.agent_type} agent"
    if code == MISSING_CAPS:
        have = fleet._cap_rows[row]
        missing = [c for c in task.required_capabilities if c not in have]
        return f"missing capabilities: {', '.join(missing)}"
    if code == NOT_ROUTABLE:
        return f"status {fleet.statuses[row]} is not routable"
    if code == CIRCUIT_OPEN:
        return "circuit open"
    if code == EJECTED:
        return "ejected by outlier detection"
    return "no free capacity"


def _static(task: TaskView, fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """Reason codes that depend only on the task's shape (cached per fleet)."""
    key: ShapeKey = (task.type, tuple(task.required_capabilities), task.agent_type)
    cached = fleet.shape(key)
    if cached is not None:
        return cached
    n = len(fleet)
    codes = np.zeros(n, dtype=np.int8)
    missing = np.zeros(n, dtype=bool)
    for cap in task.required_capabilities:
        col = fleet.caps.get(cap)
        missing |= np.isnan(col) if col is not None else True
    codes[missing] = MISSING_CAPS
    if task.agent_type is not None:
        wrong = np.fromiter((t != task.agent_type for t in fleet.agent_types), bool, count=n)
        codes[wrong] = WRONG_TYPE
    # Only agents that declare their task types can lack a handler (most take any).
    typed = fleet.typed_rows()
    if len(typed):
        kinds = fleet.task_types
        lacking = [r for r in typed.tolist() if task.type not in (kinds[r] or ())]
        codes[lacking] = NO_HANDLER
    rows = np.flatnonzero(codes == OK)
    fleet.remember_shape(key, (codes, rows))
    return codes, rows


@dataclass
class Eligibility:
    """The filter's answer: candidate rows, and a reason code per agent."""

    candidates: np.ndarray  # rows that may take the task (preferred ones only, if any)
    codes: np.ndarray  # per agent: OK or why not
    preferred: bool  # the candidates are the task's preferred agents


def eligible(task: TaskView, fleet: Fleet) -> Eligibility:
    static_codes, rows = _static(task, fleet)
    n = len(fleet)
    # Whole-fleet boolean operations (contiguous, cheap), then reasons only for
    # the few blocked rows.
    blocked = ~fleet.routable[:n] | fleet.circuit_open[:n] | fleet.ejected[:n]
    blocked |= fleet.load[:n] >= fleet.limit[:n]
    in_rows = blocked[rows]
    codes = static_codes.copy()
    stopped = rows[in_rows]
    if len(stopped):
        codes[stopped] = np.where(
            ~fleet.routable[stopped],
            NOT_ROUTABLE,
            np.where(
                fleet.circuit_open[stopped],
                CIRCUIT_OPEN,
                np.where(fleet.ejected[stopped], EJECTED, NO_CAPACITY),
            ),
        )
    dynamic_ok = ~in_rows
    for key in task.excluded_agents:
        row = fleet.by_key.get(key)
        if row is not None and static_codes[row] != NO_HANDLER:
            codes[row] = EXCLUDED
    candidates = rows[dynamic_ok]
    if task.excluded_agents:
        candidates = candidates[codes[candidates] == OK]
    if task.preferred_agents:
        wanted = {r for r in (fleet.by_key.get(k) for k in task.preferred_agents) if r is not None}
        mine = sorted(r for r in wanted if codes[r] == OK)
        if task.preferred_only:
            # Every other handler is refused for that reason (a blocked preferred
            # agent keeps its own reason).
            others = codes == OK
            others[list(wanted)] = False
            codes[others] = NOT_PREFERRED
            return Eligibility(np.asarray(mine, dtype=np.int64), codes, True)
        if mine:
            return Eligibility(np.asarray(mine, dtype=np.int64), codes, True)
    return Eligibility(candidates, codes, False)
