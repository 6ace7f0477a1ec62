"""round_robin: each task type cycles through the eligible agents in
registration order, from the one after the agent it chose last."""

from __future__ import annotations

from typing import Any

import numpy as np

from ymera.routing.fleet import Fleet
from ymera.routing.strategies.base import Ranking, Strategy
from ymera.routing.types import TaskView


class RoundRobin(Strategy):
    name = "round_robin"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._last: dict[str, str] = {}  # task type -> agent id chosen last

    def rank(self, task: TaskView, fleet: Fleet, rows: np.ndarray) -> Ranking:
        last = self._last.get(task.type)
        after = fleet.by_key.get(last, -1) if last is not None else -1
        chosen = int(np.searchsorted(rows, after, side="right")) % len(rows)
        self._last[task.type] = fleet.ids[int(rows[chosen])]
        turn = (np.arange(len(rows)) - chosen) % len(rows)
        return Ranking(
            chosen,
            {"score": -turn.astype(np.float64), "turn": turn},
            "next in turn after the agent chosen last for this task type",
        )
