"""The routing interface the dispatcher uses (re-exported from ``ymera.routing``,
where the strategies, the shared filter, policies and learning live)."""

from __future__ import annotations

from ymera.routing.filter import rejection
from ymera.routing.strategies.least_loaded import LeastLoaded
from ymera.routing.types import AgentSlot, Decision, Round, Router, TaskView

__all__ = [
    "AgentSlot",
    "Decision",
    "LeastLoaded",
    "Round",
    "Router",
    "TaskView",
    "rejection",
]
